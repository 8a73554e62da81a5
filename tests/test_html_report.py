"""``wsreplay show --html`` and ``wsreplay diff --html``: the real command writes the file,
headless Chromium (through Playwright) opens it offline and the page is checked element by element."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chat_records import (
    AGENT_EVENTS,
    HOSTILE_TEXT,
    chat_session,
    demo_session,
    write_session,
)
from tests.support.chromium import LAUNCH_ARGS, chromium_path
from tests.support.cli import run_wsreplay
from wsreplay.html_report import script_json

THREE_DAYS = 3 * 86400 + 60
REGRESSED = tuple(event for event in AGENT_EVENTS if event != "agent_thinking")


@pytest.fixture
def demo_cassette(tmp_path: Path) -> Path:
    return write_session(
        tmp_path / "demo.cassette", demo_session(), age=THREE_DAYS, upstream="reverse:https://api.staging.example"
    )


@pytest.fixture
def demo_report(tmp_path: Path, demo_cassette: Path) -> Path:
    output = tmp_path / "demo.html"
    result = run_wsreplay("show", str(demo_cassette), "--html", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"wsreplay: wrote {output}"
    return output


@pytest.fixture
def diff_report(tmp_path: Path) -> Path:
    good = write_session(tmp_path / "good.cassette", chat_session(), age=7200)
    regressed = write_session(tmp_path / "regressed.cassette", chat_session(REGRESSED), age=3600)
    output = tmp_path / "diff.html"
    result = run_wsreplay("diff", str(good), str(regressed), "--html", str(output))
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip() == "WS /ws: missing server events: agent_thinking"
    return output


# --- the file -------------------------------------------------------------------


def test_show_prints_the_cassettes_age(demo_cassette: Path) -> None:
    result = run_wsreplay("show", str(demo_cassette))
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"cassette {demo_cassette}: recorded by wsreplay 0.1.0 3 days ago, upstream reverse:")


def test_the_report_is_one_self_contained_file(demo_report: Path) -> None:
    page = demo_report.read_text(encoding="utf-8")
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert '<link rel="stylesheet"' not in page and "@import" not in page
    assert "default-src 'none'" in page
    assert page.count("<script") == 2 and '<script type="application/json" id="wsreplay-data">' in page
    assert HOSTILE_TEXT not in page and "window.pwned" in page


def test_embedded_json_cannot_close_its_script_element() -> None:
    text = script_json({"frame": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"frame": "</script><!-- & \u2028"}


def test_bad_input_is_one_sentence(tmp_path: Path, demo_cassette: Path) -> None:
    unwritable = run_wsreplay("show", str(demo_cassette), "--html", str(tmp_path / "missing" / "r.html"))
    assert unwritable.returncode == 2
    assert (
        unwritable.stderr.strip()
        == f"wsreplay: error: cannot write {tmp_path / 'missing' / 'r.html'}: No such file or directory"
    )
    not_a_cassette = tmp_path / "notes.txt"
    not_a_cassette.write_text("hello")
    for command in (("show", str(not_a_cassette)), ("diff", str(demo_cassette), str(not_a_cassette))):
        result = run_wsreplay(*command, "--html", str(tmp_path / "r.html"))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "is not a wsreplay cassette" in result.stderr and "Traceback" not in result.stderr


# --- in Chromium ------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on PATH (chromium, chromium-browser or google-chrome) to check the HTML report in")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield launched
        launched.close()


class OpenedPage:
    """A report opened in Chromium, with every console message, page error and request seen."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.on(
            "console",
            lambda message: (
                self.problems.append(f"{message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.as_uri())

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def texts(self, selector: str) -> list[str]:
        return self.page.locator(selector).all_inner_texts()

    def visible_frames(self) -> int:
        return self.page.locator(".event.frame:not(.filtered-out)").count()

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    opened: list[OpenedPage] = []

    def opener(path: Path) -> OpenedPage:
        opened.append(OpenedPage(browser, path))
        return opened[-1]

    yield opener
    for page in opened:
        page.close()


def test_the_show_report_in_chromium(open_page: Any, demo_report: Path) -> None:
    report = open_page(demo_report)
    assert report.count(".lane") == 5
    assert report.count(".lane.ws") == 3 and report.count(".lane.http") == 2
    assert report.count(".event.frame") == 12
    assert report.count(".event.frame.client") == 3
    assert report.count(".timeline .tick") == 12 and report.count(".timeline .row") == 5
    assert report.texts(".event.close .close-text") == ["1000 by client", "1008 “Authentication failed” by server"]
    assert report.count(".event.close.fail") == 1 and report.count(".close-mark.fail") == 1
    assert report.texts(".lane.refused .status.fail") == ["403"]
    assert report.texts(".lane.http .status") == ["200 OK", "401 Unauthorized"]
    assert report.count(".lane.http .status.fail") == 1
    assert '"detail": "upgrade refused"' in report.texts(".lane.refused")[0]
    assert "00000000  00 01 77 73 72 65 70 6c 61 79 ff" in report.texts(".event.frame pre.binary")[0]
    assert '"error_code": "AUTH_REQUIRED"' in report.page.locator(".lane.failure").nth(1).inner_text()
    header = report.page.locator("dl.meta").inner_text()
    assert "3 days ago" in header and "reverse:https://api.staging.example" in header and "wsreplay 0.1.0" in header
    assert "Redacted 2 values" in report.page.locator(".notes").inner_text()
    assert json.dumps(HOSTILE_TEXT) in report.page.locator(".event.frame").nth(10).inner_text()
    assert report.page.evaluate("window.pwned") is None

    report.page.fill("#filter", "agent_thinking")
    assert report.visible_frames() == 1 and report.page.inner_text("#filter-count") == "1 of 12 frames match"
    assert report.count(".timeline .tick:not(.filtered-out)") == 1
    report.page.fill("#filter", "PARIS")
    assert report.visible_frames() == 1
    report.page.fill("#filter", "")
    assert report.visible_frames() == 12 and report.page.inner_text("#filter-count") == "12 frames"
    assert report.count(".event.close") == 2

    assert report.problems == []
    assert report.requests == [demo_report.as_uri()]


def test_the_diff_report_in_chromium(open_page: Any, diff_report: Path) -> None:
    report = open_page(diff_report)
    assert report.count(".pair") == 2
    assert report.texts(".change-list li") == ["WS /ws missing server events: agent_thinking"]
    [marked] = report.texts(".event.mark-missing")
    assert "agent_thinking" in marked and "MISSING IN B" in marked
    changed = report.page.locator(".pair:not(.same)")
    assert changed.locator(".sides > .lane").count() == 2
    assert changed.locator(".sides > .lane").nth(0).locator(".event.frame").count() == 9
    assert changed.locator(".sides > .lane").nth(1).locator(".event.frame").count() == 8
    assert report.count(".event.close") == 2
    assert report.page.locator(".pair.same").get_attribute("open") is None
    report.page.fill("#filter", "tool_")
    assert report.visible_frames() == 4
    assert report.problems == []
    assert report.requests == [diff_report.as_uri()]


def test_a_cut_short_cassette_shows_its_complete_records(tmp_path: Path, demo_cassette: Path) -> None:
    cut = tmp_path / "cut.cassette"
    cut.write_bytes(demo_cassette.read_bytes()[:-5])
    output = tmp_path / "cut.html"
    result = run_wsreplay("show", str(cut), "--html", str(output))
    assert result.returncode == 0, result.stderr
    assert "ends with an incomplete record at byte" in result.stderr
    page = output.read_text(encoding="utf-8")
    data = json.loads(page.split('id="wsreplay-data">', 1)[1].split("</script>", 1)[0])
    assert data["truncated_at"] is not None and len(data["lanes"]) == 5 and data["notes"] == []
