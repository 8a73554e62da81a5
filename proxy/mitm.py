"""Run mitmproxy programmatically: the engine under wsreplay's CLI and pytest plugin.

mitmproxy routes every hook through a process-global context (`mitmproxy.ctx`), so
only one `ProxyHost` may run per process at a time. A stopped host can be followed
by a new one.

Logging: mitmproxy logs through the stdlib `logging` module under the `mitmproxy`
logger. If the caller has not given that logger a level, `ProxyHost` caps it at
WARNING so its per-connection INFO chatter never reaches the caller's handlers;
warnings and errors propagate as usual (to stderr via logging's last-resort handler
when nothing is configured). Errors logged while starting are not propagated: they
become the ProxyStartError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from mitmproxy import exceptions, options, optmanager
from mitmproxy.addons import default_addons
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.connection import Client
from mitmproxy.master import Master
from mitmproxy.proxy import mode_specs
from mitmproxy.proxy.mode_servers import ServerInstance

from wsreplay.addons.closing_handshake import ClosingHandshake
from wsreplay.addons.lost_connections import LostConnections
from wsreplay.upstream import HTTP_SCHEME_OF_WEBSOCKET

logger = logging.getLogger(__name__)

MITMPROXY_LOGGER = "mitmproxy"
CA_CERT_FILE = f"{options.CONF_BASENAME}-ca-cert.pem"
CLOSE_TIMEOUT = 5.0
"""Seconds stop() waits for mitmproxy to wind a live connection down before cutting it."""

T = TypeVar("T")


class ProxyStartError(Exception):
    """mitmproxy could not start; the message is one sentence meant for the user."""


@dataclass
class ProxySettings:
    """How to run mitmproxy; `extra_options` and `scripts` mirror `mitmdump --set` and `-s`."""

    mode: str
    """A mitmproxy mode spec; `reverse:ws://` and `reverse:wss://` are accepted as
    `reverse:http://` and `reverse:https://`, which mitmproxy uses for WebSockets too."""
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    connection_strategy: str = "eager"
    confdir: str | None = None
    ssl_insecure: bool = False
    upstream_ca: str | None = None
    extra_options: dict[str, str | Sequence[str]] = field(default_factory=dict)
    """Like `mitmdump --set NAME=VALUE`; a sequence sets a list option to several values."""
    scripts: list[str] = field(default_factory=list)

    def typed_options(self) -> dict[str, object]:
        """The mitmproxy options these settings map to, except extra options and scripts."""
        opts: dict[str, object] = {
            "mode": [normalize_mode(self.mode)],
            "listen_host": self.listen_host,
            "listen_port": self.listen_port,
            "connection_strategy": self.connection_strategy,
            "ssl_insecure": self.ssl_insecure,
            "ssl_verify_upstream_trusted_ca": self.upstream_ca,
            # No QUIC listener: wsreplay records HTTP/1-2 and WebSockets, and mitmproxy_rs's
            # UDP threads can crash the interpreter at exit (mitmproxy issue 7409).
            "http3": False,
        }
        if self.confdir is not None:
            opts["confdir"] = self.confdir
        return opts


def normalize_mode(mode: str) -> str:
    """Map `reverse:ws(s)://` to the `reverse:http(s)://` spec mitmproxy understands."""
    kind, colon, rest = mode.partition(":")
    scheme, separator, address = rest.partition("://")
    if kind == "reverse" and colon and separator and scheme in HTTP_SCHEME_OF_WEBSOCKET:
        return f"reverse:{HTTP_SCHEME_OF_WEBSOCKET[scheme]}://{address}"
    return mode


class _ConnectionTracker:
    """Internal addon, first in the chain: remembers each live client connection's task."""

    name = "wsreplay_connection_tracker"

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()

    def client_connected(self, client: Client) -> None:
        # Hooks for client_connected run inside the connection's own handler task.
        task = asyncio.current_task()
        if task is not None and task not in self.tasks:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


class _Readiness:
    """Internal addon, last in the chain: its `running` hook fires after every other addon's."""

    name = "wsreplay_readiness"

    def __init__(self) -> None:
        self.running_event = asyncio.Event()

    def running(self) -> None:
        self.running_event.set()


class _StartupLog(logging.Handler):
    """Holds mitmproxy's log records while it starts.

    ERROR records become the ProxyStartError (what mitmdump's errorcheck does) instead
    of tracebacks on stderr; the others are passed on to the parent loggers on exit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(MITMPROXY_LOGGER)
        self._propagate = True

    def __enter__(self) -> _StartupLog:
        if self._logger.level == logging.NOTSET:
            self._logger.setLevel(logging.WARNING)
        self._logger.addHandler(self)
        self._propagate, self._logger.propagate = self._logger.propagate, False
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
        if self._propagate and self._logger.parent is not None:
            for record in self.records:
                if record.levelno < logging.ERROR:
                    self._logger.parent.handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def first_error(self) -> str | None:
        for record in self.records:
            if record.levelno >= logging.ERROR:
                message = record.getMessage()
                if record.exc_info and record.exc_info[1] is not None:
                    message = f"{message}: {record.exc_info[1]}"
                return message
        return None


class ProxyHost:
    """A mitmproxy Master with the default addons, `LostConnections`, `ClosingHandshake`, and the given ones.

    Use `start`/`stop` from a running event loop, or `start_in_thread`/`stop_thread`
    from sync code (the proxy then owns an event loop on a daemon thread, and every
    addon hook runs on that thread). One ProxyHost per process at a time.
    """

    _active: ClassVar[ProxyHost | None] = None
    _active_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: ProxySettings, addons: Sequence[object]) -> None:
        self.settings = settings
        self.addons = list(addons)
        self._master: Master | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._tracker = _ConnectionTracker()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None
        self._thread_stopped: concurrent.futures.Future[None] | None = None

    @property
    def master(self) -> Master:
        if self._master is None:
            raise RuntimeError("the proxy is not running")
        return self._master

    @property
    def ca_cert_path(self) -> Path:
        """mitmproxy's CA certificate (PEM); mitmproxy creates it on start if missing."""
        confdir = self.settings.confdir or options.CONF_DIR
        return Path(confdir).expanduser() / CA_CERT_FILE

    async def start(self) -> tuple[str, int]:
        """Start mitmproxy on the running loop; return the (host, port) actually bound."""
        self._claim_process()
        with _StartupLog() as startup_log:
            try:
                self._master = self._build_master()
                self._configure()
                readiness = self._master.addons.get(_Readiness.name)
                self._run_task = asyncio.create_task(self._master.run(), name="mitmproxy master")
                await _wait_ready(readiness.running_event, self._run_task)
                if self._run_task.done():
                    self._run_task.result()
                    raise ProxyStartError("mitmproxy stopped while starting")
                host, port = self._bound_address(startup_log)
            except BaseException as e:
                await self.stop()
                if isinstance(e, exceptions.OptionsError):
                    raise ProxyStartError(f"invalid option: {e}") from None
                raise
        logger.info("mitmproxy (%s) listening on %s:%d", self.settings.mode, host, port)
        return host, port

    async def stop(self) -> None:
        """Close the listening sockets and live connections, then run the addons' `done`."""
        try:
            if self._run_task is not None:
                await self._close_listeners()
                await self._close_connections()
                self.master.should_exit.set()
                await self._run_task
                logger.info("mitmproxy (%s) stopped", self.settings.mode)
            elif self._master is not None:
                self._unload_scripts()
        finally:
            self._master = None
            self._run_task = None
            self._release_process()

    def start_in_thread(self, timeout: float = 30.0) -> tuple[str, int]:
        """Start the proxy with its own event loop on a daemon thread; for sync callers."""
        if self._thread is not None:
            raise ProxyStartError("this proxy is already running in a thread")
        started: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()
        self._thread_stopped = concurrent.futures.Future()
        self._thread_stop = asyncio.Event()
        self._thread_loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_thread, args=(started,), name="wsreplay-mitmproxy", daemon=True
        )
        self._thread.start()
        try:
            return started.result(timeout)
        except BaseException:
            self.stop_thread()
            raise

    def stop_thread(self) -> None:
        """Stop a proxy started with `start_in_thread` and join its thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        assert self._thread_loop is not None and self._thread_stop is not None
        try:
            self._thread_loop.call_soon_threadsafe(self._thread_stop.set)
        except RuntimeError:
            pass  # the loop has already finished: the start failed
        thread.join()
        self._thread_loop = self._thread_stop = None
        stopped, self._thread_stopped = self._thread_stopped, None
        if stopped is not None and stopped.done():
            stopped.result()

    def run_threadsafe(self, func: Callable[[], T], timeout: float = 30.0) -> T:
        """Call `func` on the proxy's event-loop thread and return its result.

        Addon state must only be touched from that thread; sync callers of
        `start_in_thread` use this to do so.
        """
        if self._thread is None or self._thread_loop is None:
            raise RuntimeError("the proxy is not running in a thread")
        if threading.current_thread() is self._thread:
            return func()

        async def call() -> T:
            return func()

        return asyncio.run_coroutine_threadsafe(call(), self._thread_loop).result(timeout)

    def _run_thread(self, started: concurrent.futures.Future[tuple[str, int]]) -> None:
        loop = self._thread_loop
        assert loop is not None
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            runner.run(self._serve_in_thread(started))

    def _claim_process(self) -> None:
        with ProxyHost._active_lock:
            if ProxyHost._active is not None:
                raise ProxyStartError("another wsreplay proxy is already running in this process")
            ProxyHost._active = self

    def _release_process(self) -> None:
        with ProxyHost._active_lock:
            if ProxyHost._active is self:
                ProxyHost._active = None

    def _build_master(self) -> Master:
        m = Master(options.Options(), event_loop=asyncio.get_running_loop())
        # Only feeds the deprecated `add_log` hook; as a root handler it would also
        # swallow records that logging's last-resort handler should print.
        m._legacy_log_events.uninstall()
        self._tracker.tasks.clear()
        m.addons.add(self._tracker)
        m.addons.add(*default_addons())
        m.addons.add(LostConnections(), ClosingHandshake())
        m.addons.add(*self.addons)
        m.addons.add(_Readiness())
        return m

    def _configure(self) -> None:
        """Apply the settings like mitmdump does: options, `--set` values, then scripts."""
        opts = self.master.options
        opts.update(**self.settings.typed_options())
        extra = [
            f"{name}={value}"
            for name, values in self.settings.extra_options.items()
            for value in ([values] if isinstance(values, str) else values)
        ]
        if extra:
            opts.set(*extra, defer=True)
        if self.settings.scripts:
            opts.update(scripts=list(self.settings.scripts))
            self._load_scripts()
        if opts.deferred:
            raise ProxyStartError(f"unknown option: {', '.join(sorted(opts.deferred))}")
        self._check_choices([*self.settings.typed_options(), *self.settings.extra_options])

    def _check_choices(self, names: Sequence[str]) -> None:
        """Enforce options' declared choices, which mitmproxy itself only checks on its CLI."""
        for name, option in optmanager.dump_dicts(self.master.options, names).items():
            choices = option["choices"]
            if choices and option["value"] not in choices:
                allowed = ", ".join(repr(c) for c in choices)
                raise ProxyStartError(f"invalid option: {name} must be one of {allowed}, not {option['value']!r}")

    def _load_scripts(self) -> None:
        """Load scripts now (mitmproxy 12's main does too) so their options exist."""
        loader = self.master.addons.get("scriptloader")
        for script in loader.addons:
            if script.ns is None:
                script.loadscript()

    def _unload_scripts(self) -> None:
        """Undo a configuration that failed before the master ran (stops script watchers)."""
        try:
            self.master.options.update(scripts=[])
        except exceptions.OptionsError:
            pass

    def _proxyserver(self) -> Proxyserver:
        return self.master.addons.get("proxyserver")

    def _bound_address(self, startup_log: _StartupLog) -> tuple[str, int]:
        proxyserver = self._proxyserver()
        for server in proxyserver.servers:
            if server.last_exception is not None:
                raise ProxyStartError(self._listen_error(server))
        if message := startup_log.first_error():
            raise ProxyStartError(message)
        addrs = proxyserver.listen_addrs()
        if not addrs:
            raise ProxyStartError(f"mitmproxy is not listening (mode {self.settings.mode!r})")
        host, port, *_ = addrs[0]
        return host, port

    def _listen_error(self, server: ServerInstance[mode_specs.ProxyMode]) -> str:
        opts = self.master.options
        host = server.mode.listen_host(opts.listen_host) or "*"
        port = server.mode.listen_port(opts.listen_port)
        exc = server.last_exception
        cause = exc.__cause__ if isinstance(exc, OSError) and exc.__cause__ else exc
        if isinstance(cause, OSError) and cause.errno is not None and cause.errno in errno.errorcode:
            reason = os.strerror(cause.errno).lower()
        else:
            reason = str(cause)
        return f"cannot listen on {host}:{port}: {reason}"

    async def _close_listeners(self) -> None:
        await self._proxyserver().servers.update([])

    async def _close_connections(self) -> None:
        """Cancel each client connection as mitmproxy's idle timeout does, then wait for it."""
        handlers = list(self._proxyserver().connections.values())
        for handler in handlers:
            io = handler.transports.get(handler.client)
            if io is not None and io.handler is not None:
                io.handler.cancel("proxy shutting down")
        if self._tracker.tasks:
            _, pending = await asyncio.wait(set(self._tracker.tasks), timeout=CLOSE_TIMEOUT)
            if pending:
                logger.warning("cutting %d connection(s) that did not close in time", len(pending))
        for handler in handlers:
            for io in list(handler.transports.values()):
                if io.writer is not None:
                    io.writer.close()

    async def _serve_in_thread(self, started: concurrent.futures.Future[tuple[str, int]]) -> None:
        stop, stopped = self._thread_stop, self._thread_stopped
        assert stop is not None and stopped is not None
        try:
            address = await self.start()
        except BaseException as e:
            started.set_exception(e)
            stopped.set_result(None)
            return
        started.set_result(address)
        await stop.wait()
        try:
            await self.stop()
        except BaseException as e:
            stopped.set_exception(e)
        else:
            stopped.set_result(None)


async def _wait_ready(ready: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Wait until `ready` is set or `task` ends, whichever comes first."""
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
