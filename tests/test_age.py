"""A cassette's age in words, and the durations ``--wsreplay-max-age`` takes."""

from __future__ import annotations

import pytest

from wsreplay.age import describe_age, describe_duration, parse_duration

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds_ago", "words"),
    [
        (0, "just now"),
        (59, "just now"),
        (60, "1 minute ago"),
        (3 * 3600 + 5, "3 hours ago"),
        (86400, "1 day ago"),
        (3 * 86400 + 60, "3 days ago"),
        (40 * 86400, "40 days ago"),
        (800 * 86400, "2 years ago"),
        (-3600, "in the future (its clock was ahead of this one)"),
    ],
)
def test_describe_age(seconds_ago: float, words: str) -> None:
    assert describe_age(NOW - seconds_ago, NOW) == words


@pytest.mark.parametrize(
    ("text", "seconds", "words"),
    [
        ("90s", 90, "90 seconds"),
        ("30m", 1800, "30 minutes"),
        ("12h", 43200, "12 hours"),
        ("30d", 2592000, "30 days"),
        (" 1.5d ", 129600, "36 hours"),
        ("1d", 86400, "1 day"),
    ],
)
def test_parse_duration(text: str, seconds: float, words: str) -> None:
    assert parse_duration(text) == seconds
    assert describe_duration(seconds) == words


@pytest.mark.parametrize("text", ["", "30", "30x", "d", "-1d", "0d", "30 days", "1e3s"])
def test_a_bad_duration_is_one_sentence(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration such as 90s, 30m, 12h or 30d$"):
        parse_duration(text)
