"""The ``wsreplay`` command line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

import wsreplay
from wsreplay.cassette import FLAG_FROM_CLIENT, FLAG_TEXT, CassetteError, frame_from_fields, open_cassette
from wsreplay.timeline import record_json, text_frame_json, timeline_line
from wsreplay.upstream import reverse_mode

if TYPE_CHECKING:
    from wsreplay.cassette import Cassette, CassetteReader
    from wsreplay.mitm import ProxyHost, ProxySettings
    from wsreplay.records import CassetteHeader, Record
    from wsreplay.redaction import RedactionRules
    from wsreplay.replay import ReplayOptions, ReplayReport
    from wsreplay.sources import CassetteFile

EXIT_BAD_INPUT = 2
EXIT_COMMAND_NOT_RUN = 127
COMMAND_STOP_TIMEOUT = 10.0
LINES_PER_WRITE = 1024
"""Lines of `show` output written at once."""


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one clear sentence and exit, never a traceback."""
    click.echo(f"wsreplay: error: {message}", err=True)
    sys.exit(code)


def parse_listen(_ctx: click.Context | None, _param: click.Parameter | None, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8080)")
    return host.strip("[]") or "127.0.0.1", int(port)


def reverse_mode_spec(upstream: str) -> str:
    """mitmproxy's reverse mode for an upstream URL; ws and wss map to http and https."""
    try:
        return reverse_mode(upstream)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--upstream") from None


class _EchoHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


def show_live_log() -> None:
    """Print wsreplay's live lines (one per exchange, connection, close) on stderr."""
    logger = logging.getLogger("wsreplay")
    if not any(isinstance(handler, _EchoHandler) for handler in logger.handlers):
        logger.addHandler(_EchoHandler())
    logger.setLevel(logging.INFO)


async def run_until_stopped(
    settings: ProxySettings,
    addons: Sequence[object],
    on_ready: Callable[[ProxyHost, str, int], dict[str, str]],
    command: Sequence[str] = (),
) -> int:
    """Run the proxy until Ctrl-C/SIGTERM, or until `command` ends; return the exit status.

    `on_ready` announces the proxy and returns the environment `command` runs with.
    """
    from wsreplay.mitm import ProxyHost

    host = ProxyHost(settings, addons)
    bound_host, bound_port = await host.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        environment = on_ready(host, bound_host, bound_port)
        if not command:
            await stop.wait()
            return 0
        return await run_command(command, environment, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await host.stop()


async def run_command(command: Sequence[str], environment: dict[str, str], stop: asyncio.Event) -> int:
    """Run `command` with `environment` added; stop it if we are stopped; return its exit status."""
    try:
        process = await asyncio.create_subprocess_exec(*command, env={**os.environ, **environment})
    except OSError as exc:
        click.echo(f"wsreplay: error: cannot run {command[0]!r}: {exc.strerror}", err=True)
        return EXIT_COMMAND_NOT_RUN
    ended = asyncio.create_task(process.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not ended.done():
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(ended), COMMAND_STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await ended
    code = process.returncode or 0
    return 128 - code if code < 0 else code


def reverse_environment(host: str, port: int) -> dict[str, str]:
    """What a command run under a reverse proxy is told: where to point its clients."""
    return {"WSREPLAY_URL": f"http://{host}:{port}", "WSREPLAY_WS_URL": f"ws://{host}:{port}"}


def announce_environment(proxy_host: ProxyHost, host: str, port: int, mode: str, quiet: bool) -> dict[str, str]:
    """The environment for clients of this proxy; printed unless a command gets it directly."""
    from wsreplay.trust import proxy_environment, write_ca_bundle

    if mode != "regular":
        return reverse_environment(host, port)
    bundle = write_ca_bundle(proxy_host.ca_cert_path)
    environment = proxy_environment(f"http://{host}:{port}", bundle) | reverse_environment(host, port)
    if not quiet:
        click.echo(f"wsreplay: proxy CA: {proxy_host.ca_cert_path}", err=True)
        click.echo("wsreplay: give clients this environment:", err=True)
        for name, value in environment.items():
            if name.islower() or name == "SSL_CERT_FILE":
                click.echo(f"  export {name}={value}", err=True)
    return environment


def mitmproxy_set_options(specs: tuple[str, ...]) -> dict[str, str | Sequence[str]]:
    """`--set NAME=VALUE` pairs; a name given twice becomes a list, as mitmdump does."""
    options: dict[str, str | Sequence[str]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{spec!r} is not NAME=VALUE", param_hint="--set")
        if name in options:
            previous = options[name]
            options[name] = [*([previous] if isinstance(previous, str) else previous), value]
        else:
            options[name] = value
    return options


def proxy_command_options(verb: str) -> list[Callable]:
    """Options shared by `record` and `replay` (both run mitmproxy)."""
    return [
        click.option(
            "--listen", default="127.0.0.1:8080", show_default=True, callback=parse_listen, metavar="HOST:PORT"
        ),
        click.option(
            "--mode",
            type=click.Choice(["reverse", "regular"]),
            default="reverse",
            show_default=True,
            help="reverse: clients connect to the proxy as if it were the upstream; regular: an explicit proxy "
            "(https_proxy) that intercepts TLS, for clients whose staging URLs are hard-coded.",
        ),
        click.option(
            "--confdir", type=click.Path(file_okay=False, path_type=Path), help="mitmproxy's directory for its CA."
        ),
        click.option(
            "--hosts",
            multiple=True,
            metavar="REGEX",
            help=f"Only {verb} hosts matching REGEX (repeatable); "
            + (
                "everything else passes through untouched."
                if verb == "record"
                else "everything else is refused (nothing is ever forwarded)."
            ),
        ),
        click.option(
            "--set", "set_options", multiple=True, metavar="NAME=VALUE", help="A mitmproxy option, as mitmdump --set."
        ),
        click.option(
            "-s", "--script", "scripts", multiple=True, metavar="SCRIPT", help="Load a mitmproxy addon script."
        ),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]


def proxy_settings(
    mode_spec: str,
    listen: tuple[str, int],
    confdir: Path | None,
    set_options: tuple[str, ...],
    scripts: tuple[str, ...],
    wsreplay_options: dict[str, str | Sequence[str]],
    **settings: Any,
) -> ProxySettings:
    from wsreplay.mitm import ProxySettings

    return ProxySettings(
        mode=mode_spec,
        listen_host=listen[0],
        listen_port=listen[1],
        confdir=str(confdir) if confdir else None,
        extra_options=wsreplay_options | mitmproxy_set_options(set_options),
        scripts=list(scripts),
        **settings,
    )


def serve_proxy(
    settings: ProxySettings, addons: Sequence[object], banner: str, mode: str, command: tuple[str, ...]
) -> int:
    """Run the proxy (and `command` under it); one clear sentence if it cannot start."""
    from wsreplay.mitm import ProxyStartError

    def ready(proxy_host: ProxyHost, host: str, port: int) -> dict[str, str]:
        stop_hint = f"running {' '.join(command)}" if command else "Ctrl-C to stop"
        click.echo(f"wsreplay: {banner} on {host}:{port}; {stop_hint}", err=True)
        return announce_environment(proxy_host, host, port, mode, quiet=bool(command))

    try:
        return asyncio.run(run_until_stopped(settings, addons, ready, command))
    except ProxyStartError as exc:
        fail(str(exc))


redaction_options = [
    click.option(
        "--redact-header", multiple=True, metavar="NAME|GLOB", help="Another header to treat as secret (repeatable)."
    ),
    click.option(
        "--redact-field",
        multiple=True,
        metavar="NAME|GLOB",
        help="Another JSON, query or form field to treat as secret (repeatable).",
    ),
]


def with_options(options: list[Callable]) -> Callable:
    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _rules(redact_header: tuple[str, ...], redact_field: tuple[str, ...]) -> RedactionRules:
    from wsreplay.redaction import RedactionRules

    return RedactionRules().extended(headers=redact_header, fields=redact_field)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(wsreplay.__version__, prog_name="wsreplay")
def main() -> None:
    """Record and replay WebSocket and HTTP sessions through mitmproxy."""
    for stream in (sys.stdout, sys.stderr):  # JSON in a cassette can hold lone surrogates: print them escaped
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--upstream", metavar="URL", help="Server to record (http, https, ws or wss URL). Needed in reverse mode."
)
@click.option(
    "--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Cassette to write."
)
@click.option("--overwrite", is_flag=True, help="Replace the output cassette if it exists.")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Stored in the cassette header (repeatable).")
@click.option("--insecure", is_flag=True, help="Do not verify the upstream's TLS certificate.")
@click.option(
    "--upstream-ca", type=click.Path(exists=True, dir_okay=False), help="CA file the upstream's certificate chains to."
)
@click.option(
    "--resolve",
    multiple=True,
    metavar="HOST=ADDRESS[:PORT]",
    help="Connect to ADDRESS instead of resolving HOST, like curl --resolve (repeatable).",
)
@click.option("--no-redact", is_flag=True, help="Keep secrets in the cassette (it is then not safe to share).")
@with_options(redaction_options)
@with_options(proxy_command_options("record"))
def record(
    upstream: str | None,
    output: Path,
    overwrite: bool,
    meta: tuple[str, ...],
    insecure: bool,
    upstream_ca: str | None,
    resolve: tuple[str, ...],
    no_redact: bool,
    redact_header: tuple[str, ...],
    redact_field: tuple[str, ...],
    listen: tuple[str, int],
    mode: str,
    confdir: Path | None,
    hosts: tuple[str, ...],
    set_options: tuple[str, ...],
    scripts: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Record everything between clients and the upstream into a cassette.

    With `-- COMMAND...`, run the command with the proxy's environment, stop when it
    ends and exit with its status. Secrets are redacted by default: auth headers,
    cookies, fields named like keys, tokens, secrets or passwords, and JWT signatures
    (their claims stay readable).
    """
    from wsreplay.addons.recorder import Recorder
    from wsreplay.addons.resolver import Resolver

    if mode == "reverse":
        if not upstream:
            raise click.UsageError("reverse mode needs --upstream URL (or use --mode regular)")
        mode_spec = reverse_mode_spec(upstream)
    else:
        mode_spec = "regular"
    metadata = dict(_parse_meta(item) for item in meta)
    if output.exists() and not overwrite:
        fail(f"{output} already exists; pass --overwrite to replace it or choose another --output")
    wsreplay_options: dict[str, str | Sequence[str]] = {
        "wsreplay_output": str(output),
        "wsreplay_overwrite": "true" if overwrite else "false",
        "wsreplay_metadata": json.dumps(metadata),
        "wsreplay_resolve": list(resolve),
        "wsreplay_redact": "false" if no_redact else "true",
        "wsreplay_redact_headers": list(redact_header),
        "wsreplay_redact_fields": list(redact_field),
    }
    if hosts:
        wsreplay_options["allow_hosts"] = list(hosts)
    settings = proxy_settings(
        mode_spec,
        listen,
        confdir,
        set_options,
        scripts,
        wsreplay_options,
        connection_strategy="lazy",
        ssl_insecure=insecure,
        upstream_ca=upstream_ca,
    )
    recorder = Recorder()
    show_live_log()
    target = upstream if mode == "reverse" else "any host (explicit proxy)"
    try:
        status = serve_proxy(settings, [recorder, Resolver()], f"recording {target} into {output}", mode, command)
    finally:
        recorder.finish()
    sys.exit(status)


def _parse_meta(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--meta")
    return key, value


@main.command()
@click.argument("cassette", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event, for scripts.")
@click.option(
    "--html",
    "html_output",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write a self-contained HTML report (timeline, frames, closes, exchanges) to FILE instead.",
)
def show(cassette: Path, as_json: bool, html_output: Path | None) -> None:
    """Print a cassette as a readable timeline (or write it as an HTML report)."""
    try:
        if html_output is None:
            reader = _print_timeline(cassette, as_json)
        else:
            from wsreplay.html_report import render_show

            reader, handle = open_cassette(cassette)
            with handle:
                _write_page(html_output, render_show(reader, str(cassette)))
    except CassetteError as exc:
        fail(str(exc))
    if reader.truncated_at is not None:
        click.echo(
            f"wsreplay: warning: {cassette} ends with an incomplete record at byte {reader.truncated_at} "
            f"(the recorder was stopped mid-write); the {reader.records_read} records before it are shown",
            err=True,
        )


def _print_timeline(cassette: Path, as_json: bool) -> CassetteReader:
    """Print the timeline in two streaming passes: what the clients sent, then every record
    with the client-minted values it carries. Returns the second pass's reader."""
    from wsreplay.age import describe_age
    from wsreplay.correlation import ClientSends, RecordingEchoes, preview

    client_sends = ClientSends()
    reader, handle = open_cassette(cassette)
    with handle:
        for client_side_record in reader.without_server_frames():
            client_sends.add(client_side_record)
    reader, handle = open_cassette(cassette)
    out = sys.stdout
    if not as_json:
        header = reader.header
        out.write(
            f"cassette {cassette}: recorded by wsreplay {header.wsreplay_version} {describe_age(header.created)}, "
            f"upstream {header.upstream or '-'}"
            + (f", {json.dumps(header.metadata)}" if header.metadata else "")
            + "\n"
        )
    width = shutil.get_terminal_size((120, 24)).columns
    echoes = RecordingEchoes(client_sends)
    lines: list[str] = []
    with handle:
        try:
            for item in reader.with_frame_fields():
                record: Record | None
                if not isinstance(item, list):
                    record = item
                    echoed = echoes.echoed(record)
                elif item[3] & FLAG_FROM_CLIENT:
                    record = frame_from_fields(item)
                    echoed = echoes.echoed(record)
                else:  # a server frame, the most frequent: its JSON line is made from its fields
                    _, record_id, time_us, flags, payload = item
                    echoed = echoes.server_frame(record_id, payload)
                    if as_json and flags & FLAG_TEXT and not echoed:
                        record = None
                        lines.append(text_frame_json(record_id, time_us / 1_000_000, "server", payload))
                    else:
                        record = frame_from_fields(item)
                if record is not None:
                    correlated = sorted(preview(value, None if as_json else 24) for value in echoed) if echoed else ()
                    lines.append(
                        record_json(record, correlated) if as_json else timeline_line(record, width, correlated)
                    )
                if len(lines) == LINES_PER_WRITE:
                    lines.append("")
                    out.write("\n".join(lines))
                    lines.clear()
        finally:  # the records before a corrupt one are shown too
            lines.append("")
            out.write("\n".join(lines) if len(lines) > 1 else "")
            out.flush()
    return reader


def _write_page(output: Path, page: str) -> None:
    """Write an HTML report; one sentence if the file cannot be written."""
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"wsreplay: wrote {output}", err=True)


@main.command("sample-server")
@click.option("--listen", default="127.0.0.1:8765", show_default=True, callback=parse_listen, metavar="HOST:PORT")
@click.option("--bypass-key", default=None, help="The E2E bypass key the server accepts.")
@click.option("--auth-bug", is_flag=True, help="Reproduce the report: error_message frame, then close 1008.")
@click.option("--drop-event", "drop_events", multiple=True, help="Agent event type to leave out (repeatable).")
@click.option("--event-interval", type=float, default=0.0, show_default=True, help="Seconds between agent events.")
def sample_server(
    listen: tuple[str, int], bypass_key: str | None, auth_bug: bool, drop_events: tuple[str, ...], event_interval: float
) -> None:
    """Run the bundled sample staging server (auth endpoint, health, /ws)."""
    from wsreplay.sample_server import DEFAULT_BYPASS_KEY, SampleServerConfig, serve_forever

    config = SampleServerConfig(
        bypass_key=bypass_key or DEFAULT_BYPASS_KEY,
        auth_bug=auth_bug,
        drop_events=frozenset(drop_events),
        event_interval=event_interval,
    )
    click.echo(
        f"wsreplay: sample staging server on http://{listen[0]}:{listen[1]} (ws at /ws); Ctrl-C to stop", err=True
    )
    try:
        asyncio.run(serve_forever(listen[0], listen[1], config))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        fail(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}")


@contextmanager
def reading(path: Path) -> Iterator[CassetteReader]:
    """Open a cassette for one streaming pass over its records (memory stays flat).

    A cassette that cannot be read ends the command with one sentence (exit 2); a tail cut
    short by a killed recorder is a warning once the pass is over.
    """
    try:
        reader, handle = open_cassette(path)
    except CassetteError as exc:
        fail(str(exc))
    try:
        with handle:
            yield reader
    except CassetteError as exc:
        fail(str(exc))
    if reader.truncated_at is not None:
        click.echo(
            f"wsreplay: warning: {path} ends with an incomplete record at byte {reader.truncated_at}; "
            f"using the {reader.records_read} complete records",
            err=True,
        )


def _load(path: Path) -> Cassette:
    from wsreplay.cassette import load_cassette

    try:
        cassette = load_cassette(path)
    except CassetteError as exc:
        fail(str(exc))
    if cassette.truncated_at is not None:
        click.echo(
            f"wsreplay: warning: {path} ends with an incomplete record at byte {cassette.truncated_at}; "
            f"using the {len(cassette.records)} complete records",
            err=True,
        )
    return cassette


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@with_options(redaction_options)
def redact(
    source: Path, output: Path, overwrite: bool, redact_header: tuple[str, ...], redact_field: tuple[str, ...]
) -> None:
    """Write a copy of a cassette with its secrets replaced by placeholders."""
    from itertools import islice

    from wsreplay.cassette import CassetteWriter
    from wsreplay.redaction import Redactor

    redactor = Redactor(_rules(redact_header, redact_field))
    with reading(source) as reader:  # first pass: learn every secret, wherever it is named
        redactor.learn(reader)
    learned = reader.records_read
    in_place = overwrite and output.exists() and output.samefile(source)
    target = output.with_name(f".{output.name}.redacting") if in_place else output
    try:
        writer = CassetteWriter(target, redactor.header(reader.header), overwrite=overwrite)
    except CassetteError as exc:
        fail(f"{exc} (pass --overwrite to replace it)" if "exists" in str(exc) else str(exc))
    with writer, reading(source) as reader:  # second pass: the records learned from, redacted
        for record in redactor.redacted(islice(reader, learned)):
            writer.write(record)
    if in_place:
        os.replace(target, output)
    count = sum(entry["count"] for entry in redactor.redaction_summary())
    click.echo(f"wsreplay: wrote {output} ({count} values redacted)", err=True)


@main.command()
@click.argument("cassette", type=click.Path(path_type=Path))
@with_options(redaction_options)
def scan(cassette: Path, redact_header: tuple[str, ...], redact_field: tuple[str, ...]) -> None:
    """Exit 1 and list the places where something that looks like a secret remains."""
    from wsreplay.scan import scan_records

    findings = 0
    with reading(cassette) as reader:
        for finding in scan_records(reader.header, reader, _rules(redact_header, redact_field)):
            click.echo(str(finding))
            findings += 1
    if findings:
        click.echo(f"wsreplay: {findings} possible secrets in {cassette}; run `wsreplay redact` on it", err=True)
        sys.exit(1)
    click.echo(f"wsreplay: no secrets found in {cassette}", err=True)


def replay_mode_spec(mode: str, upstream: str | None, header: CassetteHeader) -> str:
    """The mitmproxy mode for replay; reverse mode poses as the recorded upstream (never contacted)."""
    if mode == "regular":
        return "regular"
    if upstream:
        return reverse_mode_spec(upstream)
    recorded = header.upstream or ""
    return recorded if recorded.startswith("reverse:") else "reverse:http://wsreplay.invalid"


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("cassette", type=click.Path(path_type=Path))
@click.option(
    "--upstream", metavar="URL", help="Upstream the proxy poses as in reverse mode (default: the recorded one)."
)
@click.option(
    "--speed",
    default="1",
    show_default=True,
    help="1 keeps the recorded waits and gaps, N divides them, max answers at once.",
)
@click.option(
    "--on-mismatch",
    type=click.Choice(["warn", "fail"]),
    default="warn",
    show_default=True,
    help="A client frame unlike the recording: warn and go on, or fail (close with a 4000-range code).",
)
@click.option(
    "--ignore", multiple=True, metavar="KEY|PATH", help="JSON key or path ignored when matching (repeatable)."
)
@click.option(
    "--correlate",
    multiple=True,
    metavar="KEY|PATH",
    help="JSON key or path whose live client values replace the recorded ones in answers, "
    "whatever they look like (repeatable; ids with entropy are found without it).",
)
@click.option(
    "--no-correlate",
    "no_correlation",
    is_flag=True,
    help="Send recorded answers verbatim: no live client ids in place of the recorded ones.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 if anything was unmatched, matched on shape alone, or a recorded interaction went unused.",
)
@click.option("--direct", is_flag=True, help="Serve clients that connect straight to the replay server, no mitmproxy.")
@with_options(proxy_command_options("replay"))
def replay(
    cassette: Path,
    upstream: str | None,
    speed: str,
    on_mismatch: Literal["warn", "fail"],
    ignore: tuple[str, ...],
    correlate: tuple[str, ...],
    no_correlation: bool,
    strict: bool,
    direct: bool,
    listen: tuple[str, int],
    mode: str,
    confdir: Path | None,
    hosts: tuple[str, ...],
    set_options: tuple[str, ...],
    scripts: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Answer clients from a cassette alone: no network, same frames, same close codes.

    With `-- COMMAND...`, run the command with the proxy's environment, stop when it
    ends and exit with its status (or 1 under --strict when the replay was not clean).
    """
    from wsreplay.addons.replayer import Replayer
    from wsreplay.replay import ReplayOptions, parse_speed

    try:
        options = ReplayOptions(
            parse_speed(speed), on_mismatch, ignore, correlation=not no_correlation, correlate=correlate
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--speed") from None
    from wsreplay.sources import CassetteFile

    try:
        source = CassetteFile(cassette)
    except CassetteError as exc:
        fail(str(exc))
    show_live_log()
    if direct:
        if mode == "regular" or set_options or scripts or hosts:
            raise click.UsageError(
                "--direct serves clients that connect straight to it: no regular mode, --hosts, --set or -s"
            )
        direct_report, status = asyncio.run(_replay_direct(source, listen, options, command))
        click.echo(direct_report.format(), err=True)
        report: ReplayReport | None = direct_report
    else:
        wsreplay_options: dict[str, str | Sequence[str]] = {
            "wsreplay_cassette": str(cassette),
            "wsreplay_speed": speed,
            "wsreplay_on_mismatch": on_mismatch,
            "wsreplay_ignore": list(ignore),
            "wsreplay_correlation": str(not no_correlation).lower(),
            "wsreplay_correlate": list(correlate),
            "wsreplay_hosts": list(hosts),
        }
        settings = proxy_settings(
            replay_mode_spec(mode, upstream, source.header),
            listen,
            confdir,
            set_options,
            scripts,
            wsreplay_options,
            connection_strategy="lazy",
        )
        replayer = Replayer()
        status = serve_proxy(settings, [replayer], f"replaying {cassette} ({mode} mode, offline)", mode, command)
        report = replayer.report()  # the addon has logged it
    if report is not None and report.cassette_error and status == 0:
        status = EXIT_BAD_INPUT
    if strict and report is not None and not report.clean and status == 0:
        status = 1
    sys.exit(status)


async def _replay_direct(
    cassette: CassetteFile, listen: tuple[str, int], options: ReplayOptions, command: Sequence[str]
) -> tuple[ReplayReport, int]:
    """Serve `cassette` until Ctrl-C, or until `command` (told the address) ends; the report and exit status."""
    from wsreplay.replay import ReplaySession
    from wsreplay.replay_server import ReplayServer
    from wsreplay.sources import truncation_warning

    try:
        session = ReplaySession(cassette, options)
    except CassetteError as exc:
        fail(str(exc))
    if cassette.truncated_at is not None:
        click.echo(f"wsreplay: warning: {truncation_warning(cassette)}", err=True)
    server = ReplayServer(session, listen[0], listen[1])
    try:
        host, port = await server.start()
    except OSError as exc:
        fail(f"cannot listen on {listen[0]}:{listen[1]}: {os.strerror(exc.errno) if exc.errno else exc}")
    running = f"running {' '.join(command)}" if command else "Ctrl-C to stop"
    click.echo(f"wsreplay: replaying {cassette.path} directly on {host}:{port} (offline); {running}", err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    status = 0
    try:
        if command:
            status = await run_command(command, reverse_environment(host, port), stop)
        else:
            await stop.wait()
    finally:
        await server.close()
    return session.report(), status


@main.command()
@click.option(
    "--output",
    "-o",
    default="wsreplay-demo.cassette",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--confdir", type=click.Path(file_okay=False, path_type=Path), help="mitmproxy's directory for its CA.")
def demo(output: Path, confdir: Path | None) -> None:
    """Record a session from the bundled sample server, replay it offline, compare the two."""
    import aiohttp

    from wsreplay.demo import record_demo, replay_demo
    from wsreplay.mitm import ProxyStartError

    confdir_arg = str(confdir) if confdir else None
    try:
        click.echo("== 1. recording a staging session from the sample server through the proxy", err=True)
        live = asyncio.run(record_demo(output, confdir_arg))
        click.echo(f"== 2. sample server stopped; replaying {output} offline", err=True)
        replayed = asyncio.run(replay_demo(output, confdir_arg))
    except ProxyStartError as exc:
        fail(str(exc))
    except (OSError, aiohttp.ClientError, TimeoutError) as exc:
        fail(f"the demo session failed: {exc or type(exc).__name__}", code=1)
    width = min(max(len(line) for line in live), (shutil.get_terminal_size((120, 24)).columns - 3) // 2)

    def cell(text: str) -> str:
        return text if len(text) <= width else text[: width - 3] + "..."

    click.echo(f"\n{'recorded (live)':<{width}} | replayed (offline)")
    for recorded_line, replayed_line in zip(live, replayed, strict=False):
        marker = "|" if recorded_line == replayed_line else "X"
        click.echo(f"{cell(recorded_line):<{width}} {marker} {cell(replayed_line)}")
    if live == replayed:
        click.echo(f"\nidentical: the replay gave the client the same {len(live)} observations, offline.")
        click.echo(f"see the cassette with: wsreplay show {output}")
    else:
        click.echo(f"\nDIFFERENT: {len(live)} live observations, {len(replayed)} replayed (X marks the differences)")
        sys.exit(1)


@main.command()
@click.argument("before", type=click.Path(path_type=Path))
@click.argument("after", type=click.Path(path_type=Path))
@click.option("--key", metavar="PATH", help="Dotted JSON path naming a frame's event (default: type, or nested event).")
@click.option(
    "--threshold", type=float, default=1.0, show_default=True, help="Seconds of timing change worth reporting."
)
@click.option("--no-timing", is_flag=True, help="Do not compare timing at all.")
@click.option("--with-heartbeats", is_flag=True, help="Also compare ping/pong/heartbeat frames (their count varies).")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@click.option(
    "--html",
    "html_output",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write both cassettes side by side, the changes marked, as a self-contained HTML file.",
)
def diff(
    before: Path,
    after: Path,
    key: str | None,
    threshold: float,
    no_timing: bool,
    with_heartbeats: bool,
    as_json: bool,
    html_output: Path | None,
) -> None:
    """Say what changed between two cassettes: events, closes, statuses, body shapes, timing.

    Exit status 0 when they are the same, 1 when they differ, 2 on bad input.
    """
    from contextlib import ExitStack

    from wsreplay.compare import HEARTBEAT_EVENTS, DiffOptions, diff_records

    options = DiffOptions(
        key=key,
        threshold=None if no_timing else threshold,
        ignore=frozenset() if with_heartbeats else HEARTBEAT_EVENTS,
    )
    if html_output is None:
        with ExitStack() as after_stack:
            with ExitStack() as before_stack:  # left first: a warning about A comes before one about B
                reader_a = before_stack.enter_context(reading(before))
                reader_b = after_stack.enter_context(reading(after))
                result = diff_records(reader_a, reader_b, options)
    else:
        cassette_a, cassette_b = _load(before), _load(after)
        result = diff_records(cassette_a.records, cassette_b.records, options)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.text())
    if html_output is not None:
        from wsreplay.html_report import render_diff

        _write_page(html_output, render_diff(cassette_a, cassette_b, result, options))
    sys.exit(result.exit_status)


@main.command()
@click.argument("cassette", type=click.Path(path_type=Path))
@click.option(
    "--expect",
    metavar="EVENTS",
    help="Comma-separated events each chat turn must carry in order; + one or more, ? optional, * any number. "
    "Default: agent_started,agent_thinking+,tool_executing,tool_completed,agent_completed",
)
@click.option("--key", metavar="PATH", help="Dotted JSON path naming a frame's event.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
def verify(cassette: Path, expect: str | None, key: str | None, as_json: bool) -> None:
    """Check that every chat turn carries the expected agent events (exit 1 if not)."""
    from wsreplay.verify import DEFAULT_EXPECTATION, ExpectationError, verify_records

    with reading(cassette) as reader:
        try:
            result = verify_records(reader.with_frame_fields(), expect or DEFAULT_EXPECTATION, key=key)
        except ExpectationError as exc:
            raise click.BadParameter(str(exc), param_hint="--expect") from None
    if as_json:
        for chunk in result.json_chunks():
            click.echo(chunk, nl=False)
        click.echo()
    else:
        for line in result.each_line():
            click.echo(line)
    sys.exit(result.exit_status)


@main.command()
@click.argument("cassette", type=click.Path(path_type=Path))
@click.option("--format", "output_format", type=click.Choice(["har", "json"]), default="har", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout)."
)
def export(cassette: Path, output_format: str, output: Path | None) -> None:
    """Write a cassette as HAR 1.2 (WebSocket frames in Chrome's _webSocketMessages) or as JSON."""
    from contextlib import nullcontext

    from wsreplay.har import write_cassette_json, write_har

    write_document = write_har if output_format == "har" else write_cassette_json
    with reading(cassette) as reader:
        if output is not None and output.exists() and output.samefile(cassette):
            fail(f"{output} is the cassette to export; choose another output file")
        try:
            with output.open("w", encoding="utf-8") if output else nullcontext(sys.stdout) as out:
                write_document(reader.header, reader, out)
                out.write("\n")
                out.flush()
        except OSError as exc:
            fail(f"cannot write {output or 'the output'}: {exc.strerror}")
        except CassetteError:  # a corrupt record: no document at all rather than part of one
            if output is not None:
                output.unlink(missing_ok=True)
            raise
    if output is not None:
        click.echo(f"wsreplay: wrote {output}", err=True)


@main.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
def import_(source: Path, output: Path, overwrite: bool) -> None:
    """Make a cassette from a HAR (browser, Playwright, wsreplay) or a mitmproxy flow file."""
    from wsreplay.har import import_notes
    from wsreplay.importers import import_file, write_imported

    try:
        imported = import_file(source)
        summary = write_imported(imported, output, overwrite=overwrite)
    except CassetteError as exc:
        fail(str(exc))
    click.echo(f"wsreplay: wrote {output}: {summary}", err=True)
    for note in import_notes(imported):
        click.echo(f"wsreplay: note: {note}", err=True)


@main.command()
@click.option(
    "--proxy",
    "proxy_address",
    default="127.0.0.1:8080",
    show_default=True,
    callback=parse_listen,
    metavar="HOST:PORT",
    help="Where the proxy listens (its --listen).",
)
@click.option(
    "--confdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="mitmproxy's directory for its CA (created if missing).",
)
@click.option(
    "--shell",
    is_flag=True,
    help="Print `export NAME=VALUE` lines for `eval`; default NAME=VALUE lines (for $GITHUB_ENV).",
)
def env(proxy_address: tuple[str, int], confdir: Path | None, shell: bool) -> None:
    """Print the environment that makes clients use a regular-mode proxy and trust its CA.

    For CI scripts that start `wsreplay record|replay --mode regular` themselves:
    https_proxy/http_proxy/wss_proxy (and upper case), SSL_CERT_FILE,
    REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS, and NO_PROXY for loopback.
    """
    import shlex

    from wsreplay.trust import ensure_ca, proxy_environment, write_ca_bundle

    host, port = proxy_address
    try:
        bundle = write_ca_bundle(ensure_ca(str(confdir) if confdir else None))
    except OSError as exc:
        fail(f"cannot write the CA bundle in {exc.filename or confdir}: {exc.strerror}")
    for name, value in proxy_environment(f"http://{host}:{port}", bundle).items():
        click.echo(f"export {name}={shlex.quote(value)}" if shell else f"{name}={value}")


@main.command()
def addons() -> None:
    """Print the paths of wsreplay's mitmproxy addons, for `mitmdump -s PATH`.

    `lost_connections` and `closing_handshake` first: load them with `recorder` or
    `replayer`, as wsreplay does.
    """
    from wsreplay.addons import ADDON_FILES

    for path in ADDON_FILES:
        click.echo(path)


def entry_point() -> NoReturn:
    """The ``wsreplay`` console command.

    Ends the process with ``os._exit`` once the command is done and its output flushed:
    mitmproxy_rs's threads can crash the interpreter while it finalizes (SIGSEGV,
    mitmproxy issue 7409), which would turn a finished recording into a failed exit.
    """
    try:
        main(standalone_mode=True)
        code: object = 0
    except SystemExit as exit_request:
        code = exit_request.code
    if isinstance(code, str):
        click.echo(code, err=True)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
