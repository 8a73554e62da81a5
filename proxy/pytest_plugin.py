"""pytest plugin: a cassette per test, record modes, offline by default.

    @pytest.mark.wsreplay
    async def test_chat(wsreplay):
        async with websockets.connect(f"{wsreplay.ws_url}/ws") as ws: ...

The proxy runs once per test process (mitmproxy routes hooks through one global
master), on a thread with its own event loop, listening on 127.0.0.1 twice: as a
reverse proxy (``wsreplay.url``, ``wsreplay.ws_url``) and as an explicit proxy that
intercepts TLS, for clients with hard-coded staging URLs (``wsreplay.environment``,
applied for the duration of every marked test). Each test switches its cassette.

Record modes, as pytest-recording's: ``none`` (replay only, the default, so CI never
reaches the network), ``once`` (record if the cassette is missing), ``new_episodes``
(replay what is there, record what is missing), ``all`` (re-record).

Stale cassettes, as VCR's ``re_record_interval``: with ``--wsreplay-max-age 30d`` a
cassette recorded longer ago than that warns, fails the test or is re-recorded
(``--wsreplay-on-stale warn|fail|rerecord``).
"""

from __future__ import annotations

import re
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

RECORD_MODES = ("none", "once", "new_episodes", "all")
STALE_ACTIONS = ("warn", "fail", "rerecord")
CASSETTE_SUFFIX = ".cassette"
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-\[\]]+")
PLACEHOLDER_UPSTREAM = "http://wsreplay.invalid"
START_ATTEMPTS = 3
STASH_KEY = pytest.StashKey["ActiveCassette"]()


class WsreplayUnusedInteractions(UserWarning):
    """A test left recorded interactions unused (its cassette may be stale)."""


class WsreplayStaleCassette(UserWarning):
    """A test replayed a cassette older than ``--wsreplay-max-age``."""


@dataclass(frozen=True)
class StalePolicy:
    """``--wsreplay-max-age`` and ``--wsreplay-on-stale``: when a cassette is stale and what then."""

    max_age: float | None
    max_age_text: str
    action: str

    def stale_sentence(self, path: Path) -> str | None:
        """The sentence naming `path` and its age when it is older than the maximum age, else None."""
        from wsreplay.age import age_seconds, describe_age, describe_duration
        from wsreplay.cassette import CassetteError, open_cassette

        if self.max_age is None:
            return None
        try:
            reader, handle = open_cassette(path)
        except CassetteError:
            return None  # replaying it reports what is wrong with it
        handle.close()
        created = reader.header.created
        if age_seconds(created) <= self.max_age:
            return None
        return (
            f"wsreplay: cassette {path} is stale: recorded {describe_age(created)}, more than "
            f"{describe_duration(self.max_age)} ago (--wsreplay-max-age {self.max_age_text})"
        )


def _stale_policy(config: pytest.Config) -> StalePolicy:
    """The stale-cassette options, checked: a bad value is one usage error."""
    from wsreplay.age import parse_duration

    max_age_text = config.getoption("wsreplay_max_age") or config.getini("wsreplay_max_age")
    action = config.getoption("wsreplay_on_stale") or config.getini("wsreplay_on_stale")
    if action not in STALE_ACTIONS:
        raise pytest.UsageError(f"wsreplay_on_stale must be one of {', '.join(STALE_ACTIONS)}, not {action!r}")
    if not max_age_text:
        return StalePolicy(None, "", action)
    try:
        return StalePolicy(parse_duration(max_age_text), max_age_text.strip(), action)
    except ValueError as exc:
        raise pytest.UsageError(f"--wsreplay-max-age (or ini wsreplay_max_age): {exc}") from None


class _UpstreamRouter:
    """Sends reverse-proxy traffic to the current test's upstream (it changes per test)."""

    def __init__(self) -> None:
        self.upstream: tuple[str, str, int] | None = None

    def request(self, flow: Any) -> None:
        from mitmproxy import http

        from wsreplay.flows import is_replayed

        if flow.response is not None or is_replayed(flow):
            return
        if getattr(flow.client_conn.proxy_mode, "type_name", "") != "reverse":
            return
        if self.upstream is None:
            flow.response = http.Response.make(
                502,
                b"wsreplay: nothing recorded for this request and no upstream to record it from: "
                b"pass --wsreplay-upstream URL (or the marker's upstream=)",
                {"Content-Type": "text/plain"},
            )
            return
        flow.request.scheme, flow.request.host, flow.request.port = self.upstream


@dataclass
class Wsreplay:
    """What a test needs to reach the proxy (the ``wsreplay`` fixture)."""

    url: str
    """Base URL of the reverse proxy, for clients that take a URL (``http://127.0.0.1:PORT``)."""
    ws_url: str
    """The same for WebSocket clients (``ws://127.0.0.1:PORT``)."""
    proxy_url: str
    """The explicit proxy, for clients with hard-coded staging URLs."""
    environment: dict[str, str]
    """https_proxy, wss_proxy, SSL_CERT_FILE...: applied for the duration of the test."""
    cassette: Path
    recording: bool
    """True when this test's traffic goes to the real upstream and into the cassette."""


@dataclass
class ActiveCassette:
    path: Path
    record_mode: str
    replaying: bool
    recording: bool
    wsreplay: Wsreplay


class SessionProxy:
    """The one proxy of this test process, started on first use."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.host: Any = None
        self.router = _UpstreamRouter()
        self.recorder: Any = None
        self.replayer: Any = None
        self.reverse_port = 0
        self.regular_port = 0
        self.environment: dict[str, str] = {}

    def start(self) -> None:
        if self.host is not None:
            return
        from wsreplay.addons.recorder import Recorder
        from wsreplay.addons.replayer import Replayer
        from wsreplay.addons.resolver import Resolver
        from wsreplay.mitm import ProxyHost, ProxySettings, ProxyStartError
        from wsreplay.trust import proxy_environment, write_ca_bundle

        for attempt in range(START_ATTEMPTS):
            self.recorder, self.replayer = Recorder(), Replayer()
            options: dict[str, Any] = {
                # Two listeners: mitmproxy cannot put both on port 0, so the explicit proxy
                # takes a port found free just before (tried again if it is taken meanwhile).
                "mode": [f"reverse:{PLACEHOLDER_UPSTREAM}", f"regular@{_free_port()}"],
                "wsreplay_resolve": list(self.config.getoption("wsreplay_resolve") or []),
            }
            settings = ProxySettings(
                mode=f"reverse:{PLACEHOLDER_UPSTREAM}",
                connection_strategy="lazy",
                upstream_ca=self.config.getoption("wsreplay_upstream_ca"),
                extra_options=options,
            )
            host = ProxyHost(settings, [self.replayer, self.router, self.recorder, Resolver()])
            try:
                host.start_in_thread()
                break
            except ProxyStartError as exc:
                if attempt == START_ATTEMPTS - 1:
                    pytest.fail(f"wsreplay: the proxy could not start: {exc}", pytrace=False)
        self.host = host
        servers = host.master.addons.get("proxyserver").servers
        for server in servers:
            port = server.listen_addrs[0][1]
            if server.mode.type_name == "reverse":
                self.reverse_port = port
            else:
                self.regular_port = port
        bundle = write_ca_bundle(host.ca_cert_path)
        self.environment = proxy_environment(f"http://127.0.0.1:{self.regular_port}", bundle)

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop_thread()
            self.host = None

    def begin(self, test: ActiveCassette, upstream: str | None, speed: str) -> None:
        """Point the proxy at this test's cassette."""
        from mitmproxy import exceptions

        options: dict[str, Any] = {
            "wsreplay_cassette": str(test.path) if test.replaying else "",
            "wsreplay_passthrough": test.recording and test.replaying,
            "wsreplay_speed": speed,
            "wsreplay_correlation": not self.config.getoption("wsreplay_no_correlate"),
            "wsreplay_correlate": list(self.config.getini("wsreplay_correlate")),
            "wsreplay_output": str(test.path) if test.recording else "",
            "wsreplay_append": test.recording and test.replaying,
            "wsreplay_overwrite": test.recording and not test.replaying,
        }

        destination = _split_upstream(upstream) if test.recording and upstream else None

        def configure() -> None:
            self.router.upstream = destination
            self.host.master.options.update(**options)

        if test.recording:
            test.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.host.run_threadsafe(configure)
        except exceptions.OptionsError as exc:
            pytest.fail(f"wsreplay: {exc}", pytrace=False)

    def report(self) -> Any:
        """The current test's replay report so far."""
        return self.host.run_threadsafe(self.replayer.report)

    def end(self) -> Any:
        """Finish this test's cassette; return the replay report (None when not replaying)."""

        def finish() -> Any:
            report = self.replayer.report()
            self.host.master.options.update(wsreplay_cassette="", wsreplay_output="", wsreplay_passthrough=False)
            self.router.upstream = None
            return report

        return self.host.run_threadsafe(finish)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _split_upstream(url: str) -> tuple[str, str, int]:
    from wsreplay.upstream import parse_upstream

    try:
        return parse_upstream(url)
    except ValueError as exc:
        pytest.fail(f"wsreplay: the upstream {exc}; pass --wsreplay-upstream URL", pytrace=False)


# --- pytest hooks -------------------------------------------------------------------


ONE_PER_LINE: Final = "linelist"
"""pytest's ini type for a list given one item per line."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wsreplay", "WebSocket and HTTP record/replay (wsreplay)")
    group.addoption(
        "--wsreplay-mode",
        choices=RECORD_MODES,
        default=None,
        help="none: replay only, fail on anything not recorded (default); once: record missing cassettes; "
        "new_episodes: replay and record what is missing; all: re-record every cassette.",
    )
    group.addoption("--wsreplay-upstream", metavar="URL", default=None, help="Where recording goes (reverse proxy).")
    group.addoption(
        "--wsreplay-upstream-ca", metavar="FILE", default=None, help="CA of a staging server's certificate."
    )
    group.addoption(
        "--wsreplay-resolve", action="append", default=[], metavar="HOST=ADDRESS[:PORT]", help="Like curl --resolve."
    )
    group.addoption(
        "--wsreplay-speed", default=None, metavar="N|max", help="Replay speed (default 1: recorded timing)."
    )
    group.addoption(
        "--wsreplay-no-correlate",
        action="store_true",
        help="Replay recorded answers verbatim: no live client ids (thread ids, request ids) in place of the recorded.",
    )
    group.addoption(
        "--wsreplay-max-age",
        default=None,
        metavar="AGE",
        help="A cassette recorded longer ago than AGE (90s, 30m, 12h, 30d) is stale; see --wsreplay-on-stale.",
    )
    group.addoption(
        "--wsreplay-on-stale",
        choices=STALE_ACTIONS,
        default=None,
        help="What a stale cassette does: warn (default), fail the test, or rerecord it "
        "(as once records a missing cassette; needs an upstream).",
    )
    parser.addini("wsreplay_mode", "Default record mode (none, once, new_episodes, all).", default="none")
    parser.addini(
        "wsreplay_speed", "Default replay speed: 1 keeps the recorded timing, max sends at once.", default="1"
    )
    parser.addini(
        "wsreplay_correlate",
        "JSON keys or paths whose live client values replace the recorded ones in replayed answers, whatever "
        "they look like (ids with entropy are found without it).",
        type=ONE_PER_LINE,
        default=[],
    )
    parser.addini("wsreplay_max_age", "A cassette older than this (90s, 30m, 12h, 30d) is stale.", default="")
    parser.addini("wsreplay_on_stale", "What a stale cassette does: warn, fail or rerecord.", default="warn")
    parser.addini(
        "wsreplay_cassette_dir",
        "Folder of cassettes, relative to the rootdir (default: a cassettes/ folder beside each test file).",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "wsreplay(cassette=None, *, upstream=None, mode=None): record or replay this test's HTTP and WebSocket "
        "traffic through the wsreplay proxy; cassette names the file (default cassettes/{module}/{test}.cassette).",
    )
    mode = config.getoption("wsreplay_mode") or config.getini("wsreplay_mode")
    if mode not in RECORD_MODES:
        raise pytest.UsageError(f"wsreplay_mode must be one of {', '.join(RECORD_MODES)}, not {mode!r}")
    config.stash[STALE_KEY] = _stale_policy(config)
    config.stash[SESSION_KEY] = SessionProxy(config)


SESSION_KEY = pytest.StashKey[SessionProxy]()
STALE_KEY = pytest.StashKey[StalePolicy]()


def pytest_unconfigure(config: pytest.Config) -> None:
    session_proxy = config.stash.get(SESSION_KEY, None)
    if session_proxy is not None:
        session_proxy.stop()


def cassette_path(item: pytest.Item, name: str | None) -> Path:
    module = Path(str(item.path))
    configured = item.config.getini("wsreplay_cassette_dir")
    base = (Path(str(item.config.rootpath)) / configured if configured else module.parent / "cassettes") / module.stem
    if name:
        path = Path(name)
        if path.is_absolute() or len(path.parts) > 1:
            return path if path.is_absolute() else module.parent / path
        return base / (name if path.suffix else name + CASSETTE_SUFFIX)
    return base / (UNSAFE_NAME.sub("_", item.name) + CASSETTE_SUFFIX)


def _plan(item: pytest.Item, marker: pytest.Mark | None) -> tuple[Path, str, str | None]:
    kwargs = marker.kwargs if marker else {}
    name = (marker.args[0] if marker and marker.args else None) or kwargs.get("cassette")
    config = item.config
    mode = kwargs.get("mode") or config.getoption("wsreplay_mode") or config.getini("wsreplay_mode")
    upstream = config.getoption("wsreplay_upstream") or kwargs.get("upstream")
    return cassette_path(item, name), mode, upstream


@pytest.fixture
def wsreplay(request: pytest.FixtureRequest) -> Wsreplay:
    """The proxy's addresses and environment for this test (its cassette is already in place)."""
    test = request.node.stash.get(STASH_KEY, None)
    if test is None:
        test = _activate(request.node, None)
        request.addfinalizer(lambda: _deactivate(request.node))
    return test.wsreplay


@pytest.fixture
def wsreplay_browser_context_args(wsreplay: Wsreplay) -> dict[str, Any]:
    """Playwright context options that send a page's traffic, its ``fetch`` and its WebSockets
    to hard-coded staging URLs alike, through the proxy: for pytest-playwright's
    ``browser_context_args`` (see the README)."""
    return {"proxy": {"server": wsreplay.proxy_url}}


@pytest.fixture(scope="session")
def wsreplay_chromium_args() -> list[str]:
    """Chromium command-line arguments that make it accept the proxy's certificates, and no
    others it would refuse: for pytest-playwright's ``browser_type_launch_args``."""
    from wsreplay.trust import ensure_ca, spki_sha256

    return [f"--ignore-certificate-errors-spki-list={spki_sha256(ensure_ca())}"]


@pytest.fixture(autouse=True)
def _wsreplay_marker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    marker = request.node.get_closest_marker("wsreplay")
    if marker is None:
        yield
        return
    test = _activate(request.node, marker)
    for name, value in test.wsreplay.environment.items():
        monkeypatch.setenv(name, value)
    try:
        yield
    finally:
        _deactivate(request.node)


def _activate(item: pytest.Item, marker: pytest.Mark | None) -> ActiveCassette:
    path, mode, upstream = _plan(item, marker)
    exists = path.exists()
    if mode == "none" and not exists:
        pytest.fail(
            f"wsreplay: no cassette at {path}; record it once with "
            "`--wsreplay-mode once --wsreplay-upstream URL` against a live server",
            pytrace=False,
        )
    if exists and mode != "all":
        exists = not _is_stale_to_rerecord(item, path, mode, upstream)
    replaying = exists and mode in ("none", "once", "new_episodes")
    recording = mode == "all" or (mode in ("once", "new_episodes") and not exists) or mode == "new_episodes"
    session_proxy = item.config.stash[SESSION_KEY]
    session_proxy.start()
    fixture = Wsreplay(
        url=f"http://127.0.0.1:{session_proxy.reverse_port}",
        ws_url=f"ws://127.0.0.1:{session_proxy.reverse_port}",
        proxy_url=f"http://127.0.0.1:{session_proxy.regular_port}",
        environment=dict(session_proxy.environment),
        cassette=path,
        recording=recording,
    )
    test = ActiveCassette(path, mode, replaying, recording, fixture)
    item.stash[STASH_KEY] = test
    speed = item.config.getoption("wsreplay_speed") or item.config.getini("wsreplay_speed")
    session_proxy.begin(test, upstream, speed)
    return test


def _is_stale_to_rerecord(item: pytest.Item, path: Path, mode: str, upstream: str | None) -> bool:
    """Apply the stale-cassette policy; True when the cassette is to be recorded again."""
    policy = item.config.stash[STALE_KEY]
    sentence = policy.stale_sentence(path)
    if sentence is None:
        return False
    if policy.action == "warn":
        warnings.warn(WsreplayStaleCassette(sentence), stacklevel=1)
        return False
    if policy.action == "fail":
        pytest.fail(sentence, pytrace=False)
    if mode == "none":
        pytest.fail(
            f"{sentence}; record mode none never records: re-record it with --wsreplay-mode once", pytrace=False
        )
    if not upstream:
        pytest.fail(
            f"{sentence}; re-recording it needs an upstream: pass --wsreplay-upstream URL (or the marker's upstream=)",
            pytrace=False,
        )
    return True


def _deactivate(item: pytest.Item) -> None:
    """Finish the test's cassette; warn about recorded interactions it did not use."""
    test = item.stash.get(STASH_KEY, None)
    if test is None:
        return
    del item.stash[STASH_KEY]
    report = item.config.stash[SESSION_KEY].end()
    if (
        report is not None
        and test.replaying
        and not test.recording
        and (report.unused_exchanges or report.unused_connections)
    ):
        warnings.warn(WsreplayUnusedInteractions(f"{item.nodeid}: {report.format()}"), stacklevel=1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After the test body: a replay that met unrecorded traffic fails the test, with the diff."""
    try:
        result = yield
    except BaseException:
        _explain_replay(item, test_failed=True)
        raise
    _explain_replay(item, test_failed=False)
    return result


def _explain_replay(item: pytest.Item, test_failed: bool) -> None:
    test = item.stash.get(STASH_KEY, None)
    if test is None or not test.replaying or test.recording:
        return
    report = item.config.stash[SESSION_KEY].report()
    if not (report.unmatched_count or report.mismatch_count):
        return
    item.add_report_section("call", "wsreplay", report.format())
    if not test_failed:
        pytest.fail(f"wsreplay: this test's traffic differs from {test.path}:\n{report.format()}", pytrace=False)


def pytest_report_header(config: pytest.Config) -> str:
    mode = config.getoption("wsreplay_mode") or config.getini("wsreplay_mode")
    return f"wsreplay: record mode {mode}" + (" (offline replay)" if mode == "none" else "")
