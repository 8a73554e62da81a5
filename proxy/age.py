"""A cassette's age: how long ago it was recorded, and durations such as ``30d``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

DURATION = re.compile(r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhd])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
AGE_UNITS = (("year", 365 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``12h`` or ``30d``; ValueError otherwise."""
    found = DURATION.match(text)
    if found is None or float(found["amount"]) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 12h or 30d")
    return float(found["amount"]) * UNIT_SECONDS[found["unit"]]


def age_seconds(created: float, now: float | None = None) -> float:
    return (time.time() if now is None else now) - created


def describe_age(created: float, now: float | None = None) -> str:
    """``3 days ago``, ``5 minutes ago``, ``just now``; ``in the future`` for a clock ahead of this one."""
    seconds = age_seconds(created, now)
    if seconds < -60:
        return "in the future (its clock was ahead of this one)"
    for name, size in AGE_UNITS:
        if seconds >= size:
            return f"{_count(seconds // size, name)} ago"
    return "just now"


def describe_duration(seconds: float) -> str:
    """``30 days``, ``2 hours``, ``90 seconds``: a duration in its largest whole unit."""
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return _count(seconds / size, name)
    return _count(seconds, "second")


def _count(amount: float, unit: str) -> str:
    return f"{amount:g} {unit}{'' if amount == 1 else 's'}"


def iso_date(epoch: float) -> str:
    """``2026-11-29 17:00 UTC``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
