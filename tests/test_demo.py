"""`wsreplay demo`, the README's main job, from a fresh install."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import run_wsreplay
from wsreplay.sample_server import AGENT_EVENT_TYPES


def test_demo_records_replays_offline_and_finds_both_transcripts_identical(tmp_path: Path) -> None:
    cassette = tmp_path / "demo.cassette"
    result = run_wsreplay("demo", "-o", str(cassette), "--confdir", str(tmp_path / "mitmproxy"), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical: the replay gave the client the same" in result.stdout
    assert "X " not in result.stdout.split("replayed (offline)")[1].split("identical")[0]
    timeline = run_wsreplay("show", str(cassette)).stdout
    assert "-> 401" in timeline and "REFUSED /ws" in timeline
    assert "close 1008 'Authentication failed' by server" in timeline
    events = [
        event for line in timeline.splitlines() for event in AGENT_EVENT_TYPES if f'<< {{"type":"{event}"' in line
    ]
    assert events == [
        "agent_started",
        "agent_thinking",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
