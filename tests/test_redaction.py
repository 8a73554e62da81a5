"""Redaction and scanning: Sans-I/O on in-memory records, then one real recording."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsreplay.addons.recorder import Recorder
from wsreplay.cassette import Cassette, load_cassette, write_cassette
from wsreplay.jwt import decode_unverified, encode_hs256, mint_access_token
from wsreplay.mitm import ProxyHost, ProxySettings
from wsreplay.records import (
    Annotation,
    CassetteHeader,
    ConnectionFailure,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Record,
    WebSocketClose,
    WebSocketFrame,
    WebSocketOpen,
)
from wsreplay.redaction import (
    RedactionRules,
    Redactor,
    is_placeholder,
    is_redacted_jwt,
    map_record,
    name_says_secret,
    placeholder_signature,
    redact_cassette,
)
from wsreplay.sample_server import DEFAULT_BYPASS_KEY, start_sample_server
from wsreplay.scan import Finding, looks_random, scan_cassette

TIMEOUT = 10.0
BYPASS_KEY = "e2e-bypass-0f9c2a7d41b8"
REFRESH = "rt_7Hq2VxK9pLmN3sD8fGwZ4bYc"
TOKEN = mint_access_token("e2e@example.test", ["read", "write"], "jwt-signing-secret")
OTHER_TOKEN = mint_access_token("other@example.test", ["read"], "jwt-signing-secret")


def wrap(token: str) -> str:
    """A JWT as the browser puts it in a subprotocol: base64url, unpadded."""
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def signature(token: str) -> str:
    return token.rpartition(".")[2]


def request(
    path: str = "/",
    *,
    query: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    method: str = "GET",
) -> HttpRequest:
    return HttpRequest(method, "https", "api.staging.example", 443, path, query, headers=headers, body=body)


def json_response(payload: Any, *headers: tuple[str, str], separators: tuple[str, str] = (", ", ": ")) -> HttpResponse:
    body = json.dumps(payload, separators=separators).encode()
    headers = (("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers)
    return HttpResponse(200, "OK", headers=headers, body=body)


def login(token: str = TOKEN, refresh: str = REFRESH) -> HttpExchange:
    auth_body = b'{"email": "e2e@example.test", "simulate_oauth": true}'
    return HttpExchange(
        1,
        0.1,
        request(
            "/auth/e2e/test-auth",
            method="POST",
            headers=(("X-E2E-Bypass-Key", BYPASS_KEY), ("Content-Type", "application/json")),
            body=auth_body,
        ),
        json_response({"access_token": token, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 900}),
    )


def upgrade(token: str = TOKEN, *, query: str = "") -> WebSocketOpen:
    headers = (
        ("Upgrade", "websocket"),
        ("Authorization", f"Bearer {token}"),
        ("Sec-WebSocket-Protocol", f"jwt-auth, jwt.{wrap(token)}"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("X-Test-Session", "e2e-staging-4242"),
    )
    response = HttpResponse(101, "Switching Protocols", headers=(("Sec-WebSocket-Protocol", f"jwt.{wrap(token)}"),))
    return WebSocketOpen(2, 0.2, request("/ws", query=query, headers=headers), response)


def frame(payload: Any, *, from_client: bool = False, time: float = 0.3) -> WebSocketFrame:
    data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return WebSocketFrame(2, time, from_client, not isinstance(payload, bytes), data)


def header(headers: tuple[tuple[str, str], ...], name: str) -> str:
    return next(value for key, value in headers if key.lower() == name.lower())


def cassette(records: list[Record]) -> Cassette:
    return Cassette(CassetteHeader(created=1_700_000_000.0, wsreplay_version="test"), records)


def body_json(response: HttpResponse | None) -> Any:
    assert response is not None
    return json.loads(response.body)


# --- rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "X-E2E-Bypass-Key",
        "X-Api-Key",
        "X-APIKEY",
        "X-Auth-Token",
        "api_key",
        "apiKey",
        "access_token",
        "refreshToken",
        "accesstoken",
        "password",
        "client_secret",
        "secret",
        "X-Client-Credentials",
    ],
)
def test_names_that_say_secret(name: str) -> None:
    assert name_says_secret(name, RedactionRules().secret_words)


@pytest.mark.parametrize(
    "name", ["token_type", "max_tokens", "key_id", "Keep-Alive", "X-Test-Session", "monkey", "thread_id"]
)
def test_names_that_do_not(name: str) -> None:
    assert not name_says_secret(name, RedactionRules().secret_words)


def test_rules_defaults_exemptions_and_extensions() -> None:
    rules = RedactionRules()
    for name in ("authorization", "Proxy-Authorization", "COOKIE", "Set-Cookie"):
        assert rules.header_is_secret(name)
    assert not rules.header_is_secret("Sec-WebSocket-Key")
    extended = rules.extended(headers=["X-Internal-*"], fields=["session_*"])
    assert extended.header_is_secret("x-internal-signature") and not rules.header_is_secret("X-Internal-Signature")
    assert extended.field_is_secret("session_id") and not rules.field_is_secret("session_id")


# --- headers ----------------------------------------------------------------------


def test_named_headers_get_placeholders_and_keep_their_structure() -> None:
    headers = (
        ("X-E2E-Bypass-Key", BYPASS_KEY),
        ("Authorization", "Basic dXNlcjpwYXNzd29yZA=="),
        ("Proxy-Authorization", "opaque-proxy-credential"),
        ("Cookie", "sid=s3ss10n-abcdef; theme=dark"),
        ("User-Agent", "Netra-E2E-Tests/1.0"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    response = HttpResponse(200, headers=(("Set-Cookie", "sid=s3ss10n-abcdef; Path=/; HttpOnly"),))
    redacted = Redactor()(HttpExchange(1, 0.0, request(headers=headers), response))
    assert redacted.request.headers == (
        ("X-E2E-Bypass-Key", "<redacted:secret-1>"),
        ("Authorization", "Basic <redacted:secret-2>"),
        ("Proxy-Authorization", "<redacted:secret-3>"),
        ("Cookie", "sid=<redacted:secret-4>; theme=<redacted:secret-5>"),
        ("User-Agent", "Netra-E2E-Tests/1.0"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    assert redacted.response is not None
    assert redacted.response.headers == (("Set-Cookie", "sid=<redacted:secret-4>; Path=/; HttpOnly"),)


def test_extra_header_rules_apply() -> None:
    headers = (("X-Internal-Signature", "abc123"), ("X-Signature", "def456"))
    rules = RedactionRules().extended(headers=["x-internal-*"])
    redacted = Redactor(rules)(HttpExchange(1, 0.0, request(headers=headers), None))
    assert redacted.request.headers == (("X-Internal-Signature", "<redacted:secret-1>"), ("X-Signature", "def456"))


# --- JSON and other bodies ------------------------------------------------------


def test_json_fields_are_redacted_at_any_depth_and_only_strings() -> None:
    payload = {
        "type": "config",
        "data": {"auth": {"api_key": "ak-1", "password": "hunter2"}, "items": [{"secret": "s-1"}, {"name": "x"}]},
        "token_type": "Bearer",
        "usage": {"max_tokens": 1000, "total_tokens": 12},
        "key": None,
    }
    redacted = Redactor()(frame(payload))
    assert json.loads(redacted.payload) == {
        "type": "config",
        "data": {
            "auth": {"api_key": "<redacted:secret-1>", "password": "<redacted:secret-2>"},
            "items": [{"secret": "<redacted:secret-3>"}, {"name": "x"}],
        },
        "token_type": "Bearer",
        "usage": {"max_tokens": 1000, "total_tokens": 12},
        "key": None,
    }


def test_extra_field_rules_apply_to_json_query_and_form() -> None:
    rules = RedactionRules().extended(fields=["session_*"])
    form = b"session_ref=abc&grant_type=password&password=hunter2"
    record = HttpExchange(
        1,
        0.0,
        request(
            "/login",
            method="POST",
            query="session_ref=abc&page=2",
            headers=(("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(form)))),
            body=form,
        ),
        json_response({"session_ref": "abc", "ok": True}),
    )
    redacted = Redactor(rules)(record)
    placeholder = "%3Credacted%3Asecret-1%3E"
    assert redacted.request.query == f"session_ref={placeholder}&page=2"
    password = "%3Credacted%3Asecret-2%3E"
    assert redacted.request.body == f"session_ref={placeholder}&grant_type=password&password={password}".encode()
    assert header(redacted.request.headers, "Content-Length") == str(len(redacted.request.body))
    assert body_json(redacted.response) == {"session_ref": "<redacted:secret-1>", "ok": True}


def test_json_layout_is_kept() -> None:
    compact = Redactor()(frame({"access_token": "abc", "n": 1})).payload
    assert compact == b'{"access_token":"<redacted:secret-1>","n":1}'
    spaced = Redactor()(login()).response
    assert spaced is not None and spaced.body.startswith(b'{"access_token": "eyJ')


def test_non_json_bodies_lose_jwts_and_known_secrets() -> None:
    redactor = Redactor()
    redactor(login())
    text = f"debug: bearer={TOKEN} refresh={REFRESH} end".encode()
    response = HttpResponse(200, headers=(("Content-Type", "text/plain"),), body=text)
    plain = redactor(HttpExchange(3, 1.0, request(), response))
    assert plain.response is not None
    assert plain.response.body.decode() == (
        f"debug: bearer={TOKEN.rpartition('.')[0]}.{placeholder_signature(1)} refresh=<redacted:secret-2> end"
    )
    binary = redactor(frame(b"\x00\xff" + TOKEN.encode() + b"\x01" + REFRESH.encode()))
    assert TOKEN.encode() not in binary.payload and REFRESH.encode() not in binary.payload
    assert binary.payload.startswith(b"\x00\xff") and b"<redacted:secret-2>" in binary.payload


def test_content_length_follows_a_changed_body() -> None:
    redacted = Redactor()(login())
    assert redacted.response is not None
    assert header(redacted.response.headers, "Content-Length") == str(len(redacted.response.body))
    assert header(redacted.request.headers, "Content-Type") == "application/json"
    unchanged = Redactor()(HttpExchange(1, 0.0, request(), json_response({"status": "healthy"})))
    assert unchanged.response == json_response({"status": "healthy"})


def test_compressed_bodies_are_redacted_and_recompressed() -> None:
    body = gzip.compress(json.dumps({"refresh_token": REFRESH}).encode())
    headers = (("Content-Encoding", "gzip"), ("Content-Type", "application/json"), ("Content-Length", str(len(body))))
    redacted = Redactor()(HttpExchange(1, 0.0, request(), HttpResponse(200, headers=headers, body=body)))
    assert redacted.response is not None
    assert json.loads(gzip.decompress(redacted.response.body)) == {"refresh_token": "<redacted:secret-1>"}
    assert header(redacted.response.headers, "Content-Length") == str(len(redacted.response.body))


def test_close_reasons_and_failures_are_scrubbed() -> None:
    redactor = Redactor()
    closed = redactor(WebSocketClose(2, 1.0, 1008, f"bad token {TOKEN}", "server"))
    failed = redactor(ConnectionFailure(3, 1.0, f"GET /ws?token={TOKEN} failed"))
    assert TOKEN not in closed.reason and TOKEN not in failed.message
    assert closed.reason.startswith("bad token eyJ")


# --- JWTs and one placeholder per secret ----------------------------------------


def test_jwt_keeps_its_shape_and_claims_with_a_placeholder_signature() -> None:
    redacted = body_json(Redactor()(login()).response)["access_token"]
    assert decode_unverified(redacted) == decode_unverified(TOKEN)
    assert redacted.rpartition(".")[0] == TOKEN.rpartition(".")[0]
    assert signature(redacted) != signature(TOKEN)
    assert base64.urlsafe_b64decode(signature(redacted) + "==") == b"wsreplay-redacted-1"
    assert is_redacted_jwt(redacted) and not is_redacted_jwt(TOKEN)


def test_one_secret_one_placeholder_across_the_session() -> None:
    redactor = Redactor()
    logged_in = redactor(login())
    opened = redactor(upgrade(query=f"token={TOKEN}&v=2"))
    raw_headers = (("Sec-WebSocket-Protocol", f"jwt-auth, jwt.{TOKEN}"),)
    raw_protocol = redactor(WebSocketOpen(4, 0.4, request("/ws", headers=raw_headers), HttpResponse(403)))
    refreshed = redactor(frame({"type": "refresh", "refresh_token": REFRESH}, from_client=True))
    other = redactor(upgrade(OTHER_TOKEN))
    assert isinstance(opened, WebSocketOpen) and isinstance(other, WebSocketOpen)

    token = body_json(logged_in.response)["access_token"]
    assert header(opened.request.headers, "Authorization") == f"Bearer {token}"
    assert header(opened.request.headers, "Sec-WebSocket-Protocol") == f"jwt-auth, jwt.{wrap(token)}"
    assert opened.subprotocol == f"jwt.{wrap(token)}"
    assert opened.request.query == f"token={token}&v=2"
    assert header(raw_protocol.request.headers, "Sec-WebSocket-Protocol") == f"jwt-auth, jwt.{token}"
    assert json.loads(refreshed.payload)["refresh_token"] == body_json(logged_in.response)["refresh_token"]

    other_token = header(other.request.headers, "Authorization").removeprefix("Bearer ")
    assert other_token != token and decode_unverified(other_token) == decode_unverified(OTHER_TOKEN)
    assert signature(other_token) == placeholder_signature(2)


def test_redacting_twice_changes_nothing() -> None:
    first = [Redactor()(record) for record in (login(), upgrade())]
    again = Redactor()
    assert [again(record) for record in first] == first
    assert again.redaction_summary() == []


# --- the frame pre-check ------------------------------------------------------------

SLASHED = "k3y/With+Slash=="
"""A secret as some JSON encoders write it inside a string: ``k3y\\/With+Slash==``."""
PIECES = [
    "{",
    "[",
    "}",
    "]",
    '"',
    ":",
    ",",
    " ",
    "\n",
    "\u3000",
    "\xa0",
    "*",
    "é",
    "BAsd7&jh23",
    '"type"',
    '"note"',
    '"apiKey"',
    '"pass_word"',
    '"Tok-En"',
    "KEY",
    "token",
    "Password",
    "pass",
    "word",
    "eyJ",
    "ZXlK",
    "\\u006bey",
    "\\/",
    '\\"',
    TOKEN,
    wrap(TOKEN),
    REFRESH,
    BYPASS_KEY,
    SLASHED,
    SLASHED.replace("/", "\\/"),
    "\udcfe",
]


def primed_redactor() -> Redactor:
    """A redactor that has seen the login (a JWT, a refresh token, the bypass key) and a secret with a slash."""
    redactor = Redactor()
    redactor(login())
    redactor(frame({"type": "auth", "api_key": SLASHED}))
    return redactor


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.booleans())
def test_frame_precheck_says_unchanged_only_when_redaction_changes_nothing(pieces: list[str], is_text: bool) -> None:
    redactor = primed_redactor()
    payload = "".join(pieces).encode("utf-8", "surrogateescape")
    record = WebSocketFrame(2, 0.3, False, is_text, payload)
    if redactor.leaves_frame_unchanged(payload, is_text):
        before = redactor.redaction_summary()
        assert map_record(record, redactor.rules, redactor) == record
        assert redactor.redaction_summary() == before


@pytest.mark.parametrize(
    ("payload", "is_text"),
    [
        (b"BAsd7&jh23" * 1000, True),
        (b"*" * 4096, True),
        (b"\x00\xfe\x23\xfa\xf0" * 1000, False),
        (b'  "key" is not JSON here', True),
        (b'{"type":"message","content":"Summarise my costs"}', True),
    ],
)
def test_frame_precheck_passes_frames_without_secrets(payload: bytes, is_text: bool) -> None:
    assert primed_redactor().leaves_frame_unchanged(payload, is_text)


@pytest.mark.parametrize("name", ["pass_word", "Tok-En", "passéword", "API-key"])
def test_frames_with_split_secret_names_are_redacted(name: str) -> None:
    payload = json.dumps({name: "hunter2hunter2"}, ensure_ascii=False).encode()
    assert not Redactor().leaves_frame_unchanged(payload, True)
    assert is_placeholder(json.loads(Redactor()(frame({name: "hunter2hunter2"})).payload)[name])


def test_a_known_secret_written_with_json_escapes_is_redacted_in_frames() -> None:
    redactor = primed_redactor()
    record = WebSocketFrame(2, 0.3, False, True, b'{"note":"' + SLASHED.replace("/", "\\/").encode() + b'"}')
    assert not redactor.leaves_frame_unchanged(record.payload, record.is_text)
    assert is_placeholder(json.loads(redactor(record).payload)["note"])


# --- the summary ------------------------------------------------------------------


def test_summary_counts_places_and_never_holds_a_value() -> None:
    redactor = Redactor()
    for record in (login(), upgrade(), frame({"note": f"refresh with {REFRESH}"})):
        redactor(record)
    summary = redactor.redaction_summary()
    assert summary == [
        {"kind": "secret", "where": "request header X-E2E-Bypass-Key", "count": 1},
        {"kind": "jwt signature", "where": "response body json $.access_token", "count": 1},
        {"kind": "secret", "where": "response body json $.refresh_token", "count": 1},
        {"kind": "jwt signature", "where": "upgrade request header Authorization", "count": 1},
        {"kind": "jwt signature", "where": "upgrade request header Sec-WebSocket-Protocol", "count": 1},
        {"kind": "jwt signature", "where": "upgrade response header Sec-WebSocket-Protocol", "count": 1},
        {"kind": "known secret", "where": "server frame json $.note", "count": 1},
    ]
    annotation = redactor.summary_annotation(12.5)
    assert annotation == Annotation(id=0, time=12.5, data={"redactions": summary})
    dumped = json.dumps(annotation.data)
    for secret in (BYPASS_KEY, REFRESH, TOKEN, signature(TOKEN), wrap(TOKEN)):
        assert secret not in dumped


def test_redact_cassette_learns_first_and_appends_the_summary(tmp_path: Path) -> None:
    early = frame({"note": f"cached {REFRESH}"}, time=0.05)
    original = cassette([early, login(), upgrade()])
    redacted = redact_cassette(original)
    assert original.records[0] is early
    assert REFRESH.encode() not in redacted.records[0].payload
    assert len(redacted.records) == 4
    summary = redacted.records[-1]
    assert isinstance(summary, Annotation) and summary.id == 0 and summary.time == 0.2
    assert {"kind": "known secret", "where": "server frame json $.note", "count": 1} in summary.data["redactions"]

    path = tmp_path / "redacted.cassette"
    write_cassette(path, redacted)
    assert load_cassette(path).records == redacted.records
    raw = path.read_bytes()
    for secret in (BYPASS_KEY, REFRESH, signature(TOKEN), wrap(TOKEN)):
        assert secret.encode() not in raw


# --- scan -------------------------------------------------------------------------


def test_looks_random() -> None:
    assert looks_random(REFRESH) and looks_random("3f2a9c0d5b7e41f8a6c2d9e0b1f47a3c")
    assert not looks_random("hunter2") and not looks_random("What is the weather in Paris?")


def test_scan_names_every_kind_of_leftover() -> None:
    refresh_jwt = encode_hs256({"sub": "e2e", "type": "refresh"}, "k")
    leftovers = cassette(
        [
            login(refresh=refresh_jwt),
            upgrade(),
            frame({"type": "auth", "api_key": REFRESH, "password": "hunter2"}, from_client=True, time=0.5),
        ]
    )
    findings = {(f.record_id, f.where, f.reason) for f in scan_cassette(leftovers)}
    assert findings == {
        (1, "request header X-E2E-Bypass-Key", "value is not a redaction placeholder"),
        (1, "response body json $.access_token", "JWT with a real signature"),
        (1, "response body json $.refresh_token", "JWT with a real signature"),
        (2, "upgrade request header Authorization", "JWT with a real signature"),
        (2, "upgrade request header Sec-WebSocket-Protocol", "JWT with a real signature"),
        (2, "upgrade response header Sec-WebSocket-Protocol", "JWT with a real signature"),
        (2, "client frame json $.api_key", "high-entropy value in a secret-named field"),
    }
    finding = scan_cassette(cassette([leftovers.records[2]]))[0]
    assert finding == Finding(2, 0.5, "client frame json $.api_key", "high-entropy value in a secret-named field")
    assert str(finding) == "#2 at 0.500s, client frame json $.api_key: high-entropy value in a secret-named field"


def test_header_metadata_is_redacted_and_scanned() -> None:
    header = CassetteHeader(
        created=1_700_000_000.0, wsreplay_version="test", metadata={"run": "nightly", "api_key": REFRESH, "note": TOKEN}
    )
    leftovers = Cassette(header, [login()])
    assert {(f.record_id, f.where, f.reason) for f in scan_cassette(leftovers) if f.record_id == 0} == {
        (0, "header metadata json $.api_key", "high-entropy value in a secret-named field"),
        (0, "header metadata json $.note", "JWT with a real signature"),
    }
    redacted = redact_cassette(leftovers)
    metadata = redacted.header.metadata
    assert metadata["run"] == "nightly" and is_placeholder(metadata["api_key"]) and is_redacted_jwt(metadata["note"])
    assert scan_cassette(redacted) == []
    summary = redacted.records[-1]
    assert isinstance(summary, Annotation)
    assert "header metadata json $.api_key" in {entry["where"] for entry in summary.data["redactions"]}


def test_scan_passes_a_redacted_cassette() -> None:
    records = [login(), upgrade(query=f"token={TOKEN}"), frame({"refresh_token": REFRESH}, from_client=True)]
    assert scan_cassette(redact_cassette(cassette(records))) == []


# --- end to end: the sample staging server recorded through mitmproxy -----------


CI_TOKEN = "ghp_" + "7Qm2xK9vLr4TzW8pN3sY6bJd1Hf5Ga0cEu"
METADATA = {"suite": "staging-e2e", "ci_token": CI_TOKEN}


@asynccontextmanager
async def recording_proxy(upstream_port: int, output: Path, confdir: Path, redact: bool) -> AsyncIterator[int]:
    settings = ProxySettings(
        mode=f"reverse:http://127.0.0.1:{upstream_port}",
        confdir=str(confdir),
        extra_options={
            "wsreplay_output": str(output),
            "wsreplay_redact": str(redact).lower(),
            "wsreplay_metadata": json.dumps(METADATA),
        },
    )
    host = ProxyHost(settings, [Recorder()])
    _, port = await asyncio.wait_for(host.start(), TIMEOUT)
    try:
        yield port
    finally:
        await asyncio.wait_for(host.stop(), TIMEOUT)


async def staging_session(port: int) -> dict[str, str]:
    """Authenticate, open the WebSocket with the JWT twice over, chat one turn; return the secrets."""
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        async with session.post(
            f"{base}/auth/e2e/test-auth",
            json={"email": "e2e@example.test", "name": "E2E", "permissions": ["read"], "simulate_oauth": True},
            headers={"X-E2E-Bypass-Key": DEFAULT_BYPASS_KEY},
        ) as response:
            assert response.status == 200
            tokens = await response.json()
        token = tokens["access_token"]
        async with session.ws_connect(
            f"ws://127.0.0.1:{port}/ws",
            headers={"Authorization": f"Bearer {token}"},
            protocols=("jwt-auth", f"jwt.{wrap(token)}"),
        ) as ws:
            assert ws.protocol == f"jwt.{wrap(token)}"
            await ws.send_str(json.dumps({"type": "message", "content": "hello", "thread_id": "test_1"}))
            types: list[str] = []
            while "agent_completed" not in types:
                message = await ws.receive(timeout=TIMEOUT)
                assert message.type == aiohttp.WSMsgType.TEXT, message
                types.append(json.loads(message.data)["type"])
            await asyncio.wait_for(ws.close(), TIMEOUT)
    return {
        "bypass key": DEFAULT_BYPASS_KEY,
        "access token signature": signature(token),
        "wrapped access token": wrap(token),
        "refresh token": tokens["refresh_token"],
        "refresh token signature": signature(tokens["refresh_token"]),
    }


async def test_recording_the_staging_session_leaves_no_secret_in_the_file(tmp_path: Path) -> None:
    server = await asyncio.wait_for(start_sample_server(), TIMEOUT)
    try:
        redacted_path, plain_path = tmp_path / "redacted.cassette", tmp_path / "plain.cassette"
        async with recording_proxy(server.port, redacted_path, tmp_path / "mitm", True) as port:
            secrets = await staging_session(port)
        async with recording_proxy(server.port, plain_path, tmp_path / "mitm", False) as port:
            await staging_session(port)
    finally:
        await asyncio.wait_for(server.close(), TIMEOUT)

    raw = redacted_path.read_bytes()
    for name, secret in {**secrets, "CI token in the metadata": CI_TOKEN}.items():
        assert secret.encode() not in raw, f"the {name} leaked into the cassette"
    redacted = load_cassette(redacted_path)
    assert scan_cassette(redacted) == []
    assert redacted.header.metadata["suite"] == "staging-e2e" and is_placeholder(redacted.header.metadata["ci_token"])
    opened = next(r for r in redacted.records if isinstance(r, WebSocketOpen))
    token = opened.request.header("Authorization").removeprefix("Bearer ")
    assert is_redacted_jwt(token) and decode_unverified(token)[1]["aud"] == "netra-platform"
    assert any(isinstance(r, WebSocketFrame) and b"agent_completed" in r.payload for r in redacted.records)
    summary = redacted.records[-1]
    assert isinstance(summary, Annotation)
    assert "request header X-E2E-Bypass-Key" in {entry["where"] for entry in summary.data["redactions"]}

    leaks = {finding.where for finding in scan_cassette(load_cassette(plain_path))}
    assert {
        "request header X-E2E-Bypass-Key",
        "response body json $.access_token",
        "response body json $.refresh_token",
        "upgrade request header Authorization",
        "upgrade request header Sec-WebSocket-Protocol",
        "header metadata json $.ci_token",
    } <= leaks


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b'"token"' + b"]" * 100_000,
        b'{"password":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"jwt":"eyJ' + b"[" * 100_000 + b'"}',
    ],
    ids=["array", "secret-named member", "jwt-looking"],
)
def test_json_nested_too_deep_to_parse_is_recorded_as_it_came(payload: bytes) -> None:
    """A frame whose JSON nests deeper than Python parses (a hostile or broken peer) is not
    parsed: the recorder keeps it whole rather than fail its hook and lose the frame."""
    frame = WebSocketFrame(1, 0.5, False, True, payload)
    assert Redactor()(frame) == frame
    assert scan_cassette(Cassette(CassetteHeader(created=0.0, wsreplay_version="test"), [frame])) == []
