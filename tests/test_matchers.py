"""Tests for wsreplay.matchers: volatile values, JSON-aware diffs, request and frame matchers."""

from __future__ import annotations

import base64
import json
import random
import uuid
from urllib.parse import urlencode

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from wsreplay.jwt import mint_access_token
from wsreplay.matchers import (
    DEFAULT_HTTP_MATCHERS,
    DEFAULT_WEBSOCKET_MATCHERS,
    MISSING,
    Difference,
    Ignore,
    body,
    closest,
    compare_json,
    format_differences,
    headers,
    index_key,
    is_volatile_key,
    is_volatile_value,
    match_frame,
    match_message,
    match_request,
    method,
    path,
    query,
    shape,
    subprotocols,
    summarize,
)
from wsreplay.records import HttpRequest, WebSocketFrame

SECRET = "test-secret"


def request(
    path_: str = "/api",
    method_: str = "GET",
    query_: str = "",
    body_: bytes = b"",
    headers_: tuple[tuple[str, str], ...] = (),
) -> HttpRequest:
    return HttpRequest(method_, "https", "api.staging.example", 443, path_, query_, headers=headers_, body=body_)


def token(email: str = "e2e@example.com") -> str:
    return mint_access_token(email, ["read"], SECRET)


def subprotocol_token(jwt: str) -> str:
    return "jwt." + base64.urlsafe_b64encode(jwt.encode()).decode().rstrip("=")


def text_frame(data: object) -> WebSocketFrame:
    return WebSocketFrame(1, 0.0, True, True, json.dumps(data).encode())


# --- volatility -------------------------------------------------------------------


def test_volatile_keys_include_ids_timestamps_and_jwt_claims() -> None:
    for key in ("timestamp", "id", "thread_id", "run_id", "request_id", "correlation_id", "jti", "iat", "exp"):
        assert is_volatile_key(key), key
    assert is_volatile_key("threadId")
    assert is_volatile_key("nonce") and is_volatile_key("token")
    for key in ("type", "content", "event", "status", "tool_name", "token_type"):
        assert not is_volatile_key(key), key


def test_volatile_values_are_uuids_datetimes_epochs_and_jwts() -> None:
    assert is_volatile_value(str(uuid.uuid4()))
    assert is_volatile_value("2025-09-08T01:34:41.270Z")
    assert is_volatile_value("2025-09-08T01:34:41+00:00")
    assert is_volatile_value(1757292881.27)
    assert is_volatile_value(1757292881270)
    assert is_volatile_value(token())
    for value in ("hello", "agent_started", 42, 3.5, True, None, "e2e-staging"):
        assert not is_volatile_value(value), value


def test_shape_replaces_volatile_parts_only() -> None:
    assert shape("Bearer " + token()) == "Bearer <jwt>"
    assert shape(subprotocol_token(token())) == "jwt.<token>"
    assert shape("test_1757292881") == "test_<epoch>"
    assert shape(f"/threads/{uuid.uuid4()}/messages") == "/threads/<uuid>/messages"
    assert shape("jwt-auth") == "jwt-auth"
    assert shape("a_rather_long_snake_case_identifier_without_digits") == (
        "a_rather_long_snake_case_identifier_without_digits"
    )


# --- JSON -------------------------------------------------------------------------


def test_volatile_fields_are_ignored_in_json() -> None:
    recorded = {
        "type": "message",
        "content": "hello",
        "thread_id": "test_1757292881",
        "timestamp": 1757292881.1,
        "payload": {"run_id": str(uuid.uuid4()), "sent": "2025-09-08T01:34:41Z", "ref": str(uuid.uuid4())},
    }
    live = {
        "type": "message",
        "content": "hello",
        "thread_id": "test_1799999999",
        "timestamp": 1799999999.9,
        "payload": {"run_id": "something else", "sent": "2026-01-01T00:00:00Z", "ref": str(uuid.uuid4())},
    }
    assert compare_json(recorded, live) == []


def test_frame_shape_may_vary_in_volatile_keys() -> None:
    assert compare_json({"type": "ping"}, {"type": "ping", "id": 3, "timestamp": 1757292881}) == []
    assert compare_json({"type": "ping", "id": 1, "nonce": "x"}, {"type": "ping"}) == []


def test_structural_differences_are_reported_with_paths() -> None:
    recorded = {"type": "message", "payload": {"content": "hi", "tags": ["a", "b"]}, "critical": True}
    live = {"type": "user_message", "payload": {"content": "hi", "tags": ["a"]}, "critical": 1, "extra": 2}
    differences = compare_json(recorded, live)
    assert differences == [
        Difference("$.type", "message", "user_message"),
        Difference("$.payload.tags[1]", "b", MISSING),
        Difference("$.critical", True, 1),
        Difference("$.extra", MISSING, 2),
    ]
    text = format_differences(differences)
    assert '$.type: expected "message", received "user_message"' in text
    assert '$.payload.tags[1]: expected "b", received nothing' in text
    assert "$.extra: expected nothing, received 2" in text
    assert summarize(differences).endswith("(+3 more)")


def test_type_differences_are_caught() -> None:
    assert compare_json({"n": 1}, {"n": "1"}) == [Difference("$.n", 1, "1")]
    assert compare_json({"n": 1}, {"n": 1.0}) == []
    assert compare_json({"a": {"b": 1}}, {"a": [1]}) == [Difference("$.a", {"b": 1}, [1])]
    assert compare_json({"a": None}, {"a": False}) == [Difference("$.a", None, False)]


def test_jwts_compare_by_their_non_volatile_claims() -> None:
    assert compare_json({"auth": token()}, {"auth": token()}) == []
    differences = compare_json({"auth": token("a@example.com")}, {"auth": token("b@example.com")})
    assert [d.path for d in differences] == ["$.auth<jwt>.sub", "$.auth<jwt>.email"]


def test_user_ignore_keys_and_paths() -> None:
    recorded = {"session": "s1", "payload": {"items": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}], "note": "x"}}
    live = {"session": "s2", "payload": {"items": [{"sku": "c", "n": 1}, {"sku": "d", "n": 2}], "note": "y"}}
    assert len(compare_json(recorded, live)) == 4
    ignore = Ignore.parse(["session", "payload.items[*].sku", "$.payload.note"])
    assert compare_json(recorded, live, ignore) == []
    assert compare_json(recorded, live, ["session"]) != []


def test_digits_inside_strings_are_ignored_only_when_asked() -> None:
    recorded, live = {"email": "e2e-16344@example.test", "n": "2"}, {"email": "e2e-16347@example.test", "n": "3"}
    assert [d.path for d in compare_json(recorded, live)] == ["$.email", "$.n"]
    assert [d.path for d in compare_json(recorded, live, Ignore(digits_in_text=True))] == ["$.n"]


def test_long_lists_are_summarized() -> None:
    differences = compare_json(list(range(20)), list(range(100, 120)))
    text = format_differences(differences, limit=5)
    assert text.count("\n") == 5 and text.endswith("... and 15 more")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_matches_itself(value: object) -> None:
    assert compare_json(value, value) == []


@given(st.text(min_size=1, max_size=12), st.uuids(), st.uuids(), st.integers(1_000_000_000, 9_999_999_999))
def test_values_differing_only_in_volatile_parts_match(
    content: str, first: uuid.UUID, second: uuid.UUID, epoch: int
) -> None:
    recorded = {"content": content, "ref": str(first), "at": 1757292881, "trace": f"run-{first}"}
    live = {"content": content, "ref": str(second), "at": epoch, "trace": f"run-{second}"}
    assert compare_json(recorded, live) == []


# --- index keys ---------------------------------------------------------------------
#
# A template is a JSON document whose leaves are fixed values or volatile ones of a kind;
# two instances of it differ only in what a user's test changes on every run.

VOLATILE_KINDS = {
    "uuid": lambda rnd: str(uuid.UUID(int=rnd.getrandbits(128))),
    "epoch": lambda rnd: rnd.randrange(1_600_000_000, 1_900_000_000),
    "epoch_ms": lambda rnd: rnd.randrange(1_600_000_000_000, 1_900_000_000_000),
    "datetime": lambda rnd: (
        f"2026-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}T10:{rnd.randrange(60):02d}:00Z"
    ),
    "jwt": lambda rnd: token(f"user{rnd.randrange(1000)}@example.com"),
    "hex": lambda rnd: f"{rnd.getrandbits(96):024x}1",
}
fixed_leaves = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text("abc xy-_", max_size=6)
leaves = (
    fixed_leaves.map(lambda value: ("fixed", value))
    | st.sampled_from(sorted(VOLATILE_KINDS)).map(lambda kind: ("volatile", kind))
    | st.text("abc", max_size=3).map(lambda prefix: ("per-run digits", prefix))
)
keys = st.sampled_from(["content", "type", "items", "sku", "id", "thread_id", "requestId", "timestamp", "session"])
templates = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3).map(lambda items: ("list", items))
        | st.dictionaries(keys, children, max_size=4).map(lambda entries: ("dict", entries))
    ),
    max_leaves=12,
)


def instance(template: tuple, rnd: random.Random) -> object:
    """One run's document: fresh volatile values; entries holding one may be left out."""
    kind, content = template
    if kind == "fixed":
        return content
    if kind == "volatile":
        return VOLATILE_KINDS[content](rnd)
    if kind == "per-run digits":
        return f"{content}-{rnd.randrange(10_000)}@example.test"
    if kind == "list":
        return [instance(item, rnd) for item in content]
    return {
        key: instance(item, rnd)
        for key, item in content.items()
        if not (item[0] == "volatile" and rnd.random() < 0.3) and not (is_volatile_key(key) and rnd.random() < 0.3)
    }


IGNORES = [Ignore(), Ignore(digits_in_text=True), Ignore.parse(["items[*].sku", "session", "content"])]


@given(templates, st.dictionaries(keys, leaves, max_size=4), st.integers(0, 2**32))
def test_requests_that_match_share_their_index_key(template: tuple, query_template: dict, seed: int) -> None:
    rnd = random.Random(seed)
    runs = []
    for _ in range(2):
        query_ = urlencode({key: str(instance(leaf, rnd)) for key, leaf in query_template.items()})
        runs.append(request("/api/items", "POST", query_, json.dumps(instance(template, rnd)).encode()))
    first, second = runs
    for ignore in IGNORES:
        if not match_request(first, second, DEFAULT_HTTP_MATCHERS, ignore):
            assert index_key(first, DEFAULT_HTTP_MATCHERS, ignore) == index_key(second, DEFAULT_HTTP_MATCHERS, ignore)
    if not match_request(first, second, DEFAULT_HTTP_MATCHERS, IGNORES[1]):
        event("matched")


def test_index_keys_tell_apart_what_the_matchers_tell_apart() -> None:
    def posted(document: object) -> HttpRequest:
        return request("/api/messages", "POST", body_=json.dumps(document).encode())

    different = [
        posted({"content": "hello"}),
        posted({"content": "hello!"}),
        posted({"content": "hello", "type": "message"}),
        posted({"content": ["hello"]}),
        posted({"content": 1}),
        posted({"content": True}),
        request("/api/messages", "POST", body_=b"hello"),
        request("/api/messages", "POST", body_=b"\xff\xfe"),
        request("/api/messages", "POST", "page=2"),
        request("/api/messages", "PUT"),
        request("/api/other", "POST"),
    ]
    found = {index_key(candidate, DEFAULT_HTTP_MATCHERS) for candidate in different}
    assert len(found) == len(different)


# --- frames -----------------------------------------------------------------------


def test_frame_matcher_is_json_aware_and_checks_the_opcode() -> None:
    recorded = text_frame({"type": "start_agent", "payload": {"user_request": "hi", "thread_id": "t1"}})
    same = json.dumps({"payload": {"thread_id": "t2", "user_request": "hi"}, "type": "start_agent"})
    assert match_frame(recorded, True, same) == []
    assert match_frame(recorded, True, same.encode()) == []
    changed = json.dumps({"type": "start_agent", "payload": {"user_request": "bye"}})
    assert [str(d) for d in match_frame(recorded, True, changed)] == [
        '$.payload.user_request: expected "hi", received "bye"'
    ]
    assert str(match_frame(recorded, False, b"\x00")[0]) == "frame type: expected a text frame, received a binary frame"


def test_frame_matcher_for_plain_text_and_binary() -> None:
    assert match_frame(WebSocketFrame(1, 0, True, True, b"ping 1757292881"), True, "ping 1800000000") == []
    assert match_frame(WebSocketFrame(1, 0, True, True, b"ping"), True, "pong") != []
    binary = WebSocketFrame(1, 0, True, False, b"\x01\x02")
    assert match_frame(binary, False, b"\x01\x02") == []
    assert "2 bytes 01 02" in str(match_frame(binary, False, b"\x01\x03")[0])


# --- requests ---------------------------------------------------------------------


def test_method_path_query_and_body_matchers() -> None:
    ignore = Ignore()
    assert method(request(method_="GET"), request(method_="get"), ignore) == []
    assert method(request(method_="GET"), request(method_="POST"), ignore) == [Difference("method", "GET", "POST")]
    assert path(request(f"/t/{uuid.uuid4()}"), request(f"/t/{uuid.uuid4()}"), ignore) == []
    assert path(request("/a"), request("/b"), ignore) == [Difference("path", "/a", "/b")]
    assert query(request(query_="a=1&token=x"), request(query_=f"token={token()}&a=1"), ignore) == []
    assert query(request(query_="a=1"), request(query_="a=2&b=3"), ignore) == [
        Difference("query.a", "1", "2"),
        Difference("query.b", MISSING, "3"),
    ]


def test_body_matcher_compares_json_as_json_and_forms_as_forms() -> None:
    ignore = Ignore()
    recorded = request(method_="POST", body_=b'{"email": "e2e@x.test", "permissions": ["read"], "nonce": "1"}')
    live = request(method_="POST", body_=b'{"permissions":["read"],"email":"e2e@x.test","nonce":"2"}')
    assert body(recorded, live, ignore) == []
    other = request(method_="POST", body_=b'{"email": "other@x.test", "permissions": ["read"]}')
    assert [str(d) for d in body(recorded, other, ignore)] == [
        'body.email: expected "e2e@x.test", received "other@x.test"'
    ]
    form = (("Content-Type", "application/x-www-form-urlencoded"),)
    assert body(request(body_=b"a=1&b=2", headers_=form), request(body_=b"b=2&a=1", headers_=form), ignore) == []
    assert body(request(body_=b"\xff\x00"), request(body_=b"\xff\x01"), ignore)[0].path == "body"


def test_headers_are_not_matched_by_default_but_can_be() -> None:
    recorded = request(headers_=(("X-Test-Session", "e2e-staging-1"), ("X-Test-Type", "E2E")))
    live = request(headers_=(("X-Test-Session", "e2e-staging-2"), ("X-Test-Type", "unit")))
    assert match_request(recorded, live, DEFAULT_HTTP_MATCHERS) == []
    assert [d.path for d in match_request(recorded, live, (headers("X-Test-Type"),))] == ["headers.X-Test-Type"]


def test_subprotocols_compare_token_bearing_values_by_shape() -> None:
    def upgrade(*offered: str) -> HttpRequest:
        return request("/ws", headers_=(("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", ", ".join(offered))))

    ignore = Ignore()
    recorded = upgrade("jwt-auth", subprotocol_token(token()))
    assert subprotocols(recorded, upgrade("jwt-auth", subprotocol_token(token("other@x.test"))), ignore) == []
    assert subprotocols(recorded, upgrade("jwt-auth"), ignore) != []
    assert subprotocols(recorded, upgrade("chat", subprotocol_token(token())), ignore) != []
    assert match_request(recorded, upgrade("jwt-auth", subprotocol_token(token())), DEFAULT_WEBSOCKET_MATCHERS) == []


def test_closest_prefers_the_request_failing_fewest_matchers() -> None:
    live = request("/auth/e2e/test-auth", "POST", body_=b'{"email": "b@x.test"}')
    candidates = [
        request("/health"),
        request("/auth/e2e/test-auth", "POST", body_=b'{"email": "a@x.test"}'),
        request("/auth/e2e/other", "POST", body_=b'{"email": "b@x.test"}'),
    ]
    found = closest(live, candidates, DEFAULT_HTTP_MATCHERS)
    assert found is not None
    recorded, differences = found
    assert recorded is candidates[1]
    assert [str(d) for d in differences] == ['body.email: expected "a@x.test", received "b@x.test"']
    assert closest(live, [], DEFAULT_HTTP_MATCHERS) is None


@pytest.mark.parametrize(
    "received",
    [
        b'  {"type": "message", "n": 1}',
        b'\xef\xbb\xbf{"type":"message","n":1}',
        '{"type":"message","n":1}'.encode("utf-16"),
        '{"type":"message","n":1}'.encode("utf-16-be"),
        '{"type":"message","n":1}'.encode("utf-32-le"),
        '\n{"type":"message","n":1}',
    ],
    ids=["spaces", "utf-8 bom", "utf-16", "utf-16-be", "utf-32-le", "str"],
)
def test_a_text_frame_json_reads_as_json_is_compared_as_json(received: bytes | str) -> None:
    assert match_message(True, b'{"type":"message","n":1}', True, received) == []
    assert [d.path for d in match_message(True, b'{"type":"message","n":2}', True, received)] == ["$.n"]


@pytest.mark.parametrize("received", [b"hello 7", "hello 7", b"*" * 1000, b"\xc3\xa9t\xc3\xa9"])
def test_a_text_frame_that_cannot_be_json_is_compared_as_text(received: bytes | str) -> None:
    data = received.encode() if isinstance(received, str) else received
    assert match_message(True, data, True, received) == []
    assert match_message(True, b"hello 8", True, received) != []
