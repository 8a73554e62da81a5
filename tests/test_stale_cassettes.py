"""Stale cassettes (``--wsreplay-max-age``, ``--wsreplay-on-stale``) in real pytest runs.

Old cassettes are made by writing a header whose ``created`` lies in the past.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.support.chat_records import auth_exchange, write_session
from tests.support.scenario import staging_upstream
from tests.test_pytest_plugin import run_pytest
from wsreplay.cassette import load_cassette

DAY = 86400
SUITE = """
import httpx
import pytest


def log_in(url):
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        return client.post("/auth/e2e/test-auth", json={"email": "e2e@example.test", "simulate_oauth": True})


@pytest.mark.wsreplay
def test_old(wsreplay):
    assert log_in(wsreplay.url).status_code == 401


@pytest.mark.wsreplay
def test_recent(wsreplay):
    assert log_in(wsreplay.url).status_code == 401
"""


def make_suite(directory: Path, old_age: float = 40 * DAY) -> tuple[Path, Path]:
    """The suite, a cassette recorded `old_age` ago for test_old and one recorded a day ago for test_recent."""
    (directory / "test_suite.py").write_text(SUITE)
    cassettes = directory / "cassettes" / "test_suite"
    cassettes.mkdir(parents=True)
    old = write_session(cassettes / "test_old.cassette", [auth_exchange(1, 0.0, 401)], age=old_age)
    recent = write_session(cassettes / "test_recent.cassette", [auth_exchange(1, 0.0, 401)], age=DAY)
    return old, recent


def test_warn_names_the_cassette_and_its_age(tmp_path: Path) -> None:
    old, _ = make_suite(tmp_path)
    result = run_pytest(tmp_path, "--wsreplay-max-age", "30d")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 1 warning" in result.stdout
    assert (
        f"WsreplayStaleCassette: wsreplay: cassette {old} is stale: recorded 40 days ago, more than 30 days ago "
        "(--wsreplay-max-age 30d)"
    ) in result.stdout
    assert "test_recent.cassette is stale" not in result.stdout


def test_fail_from_the_ini_options(tmp_path: Path) -> None:
    old, _ = make_suite(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\nwsreplay_max_age = 720h\nwsreplay_on_stale = fail\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
    assert (
        f"wsreplay: cassette {old} is stale: recorded 40 days ago, more than 30 days ago (--wsreplay-max-age 720h)"
        in result.stdout
    )


def test_without_a_max_age_nothing_is_stale(tmp_path: Path) -> None:
    make_suite(tmp_path, old_age=3000 * DAY)
    result = run_pytest(tmp_path, "--wsreplay-on-stale", "fail")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "warning" not in result.stdout


async def test_rerecord_records_the_stale_cassette_again_from_the_upstream(tmp_path: Path) -> None:
    old, recent = make_suite(tmp_path)
    recent_created = load_cassette(recent).header.created
    async with staging_upstream() as upstream:
        result = await asyncio.to_thread(
            run_pytest,
            tmp_path,
            "--wsreplay-max-age",
            "30d",
            "--wsreplay-on-stale",
            "rerecord",
            "--wsreplay-mode",
            "once",
            "--wsreplay-upstream",
            upstream.http_url,
        )
        reached = [request.path for request in upstream.requests]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "warning" not in result.stdout
    assert reached == ["/auth/e2e/test-auth"]
    assert time.time() - load_cassette(old).header.created < 600
    assert load_cassette(recent).header.created == recent_created
    offline = await asyncio.to_thread(run_pytest, tmp_path, "--wsreplay-max-age", "30d", "--wsreplay-on-stale", "fail")
    assert offline.returncode == 0, offline.stdout + offline.stderr


def test_rerecord_without_an_upstream_fails_saying_one_is_needed(tmp_path: Path) -> None:
    old, _ = make_suite(tmp_path)
    result = run_pytest(
        tmp_path, "--wsreplay-max-age", "30d", "--wsreplay-on-stale", "rerecord", "--wsreplay-mode", "once"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
    assert (
        f"wsreplay: cassette {old} is stale: recorded 40 days ago, more than 30 days ago (--wsreplay-max-age 30d); "
        "re-recording it needs an upstream: pass --wsreplay-upstream URL"
    ) in result.stdout


def test_rerecord_in_mode_none_fails_rather_than_reach_the_network(tmp_path: Path) -> None:
    make_suite(tmp_path)
    result = run_pytest(
        tmp_path,
        "--wsreplay-max-age",
        "30d",
        "--wsreplay-on-stale",
        "rerecord",
        "--wsreplay-upstream",
        "http://127.0.0.1:9",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "record mode none never records: re-record it with --wsreplay-mode once" in result.stdout


def test_a_bad_max_age_is_one_usage_error(tmp_path: Path) -> None:
    make_suite(tmp_path)
    for args, message in (
        (
            ("--wsreplay-max-age", "30x"),
            "ERROR: --wsreplay-max-age (or ini wsreplay_max_age): '30x' is not a duration such as 90s, 30m, 12h or 30d",
        ),
        (
            ("-o", "wsreplay_on_stale=explode"),
            "ERROR: wsreplay_on_stale must be one of warn, fail, rerecord, not 'explode'",
        ),
    ):
        result = run_pytest(tmp_path, *args)
        assert result.returncode == 4, result.stdout + result.stderr
        assert result.stderr.strip() == message
