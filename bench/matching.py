"""HTTP cassettes of K exchanges: load time and per-request match cost, wsreplay and vcrpy.

The exchanges are a mix of four REST endpoints, each exchange with its own path
(``/api/v1/users/17``, ``POST /api/v1/threads/18/messages`` with a JSON body...).
Live requests to wsreplay carry fresh volatile values (``request_id``, ``client_ts``)
in their JSON bodies, so the body matcher does its JSON comparison; vcrpy gets the
recorded requests unchanged (its default matchers: method, scheme, host, port, path,
query; it has no notion of volatile values).

A second, adversarial shape: K exchanges on one path differing only by query
(``GET /api/v1/search?q=term17&ts=<epoch>``), live requests with a fresh ``ts``: no
exact repeat, so each lookup goes through the index of what the matchers compare.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsreplay.cassette import Cassette, write_cassette
from wsreplay.records import CassetteHeader, HttpExchange, HttpRequest, HttpResponse
from wsreplay.replay import ReplayOptions, ReplaySession
from wsreplay.sources import CassetteFile

HOST = "api.example.test"
REQUEST_HEADERS = (("Host", HOST), ("User-Agent", "bench/1.0"), ("Accept", "application/json"))
JSON_HEADERS = (*REQUEST_HEADERS, ("Content-Type", "application/json"))
RESPONSE_HEADERS = (("Content-Type", "application/json"), ("Server", "bench"))


def _body(index: int, fresh: bool) -> bytes:
    rng = random.Random(index * 7919 + (1 if fresh else 0))
    return json.dumps(
        {
            "text": f"message number {index}",
            "thread_id": f"thread-{index}",
            "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "client_ts": 1700000000 + index + (rng.random() * 1000 if fresh else 0),
            "options": {"stream": True, "model": "bench"},
        },
        separators=(",", ":"),
    ).encode()


def make_request(index: int, *, shape: str = "mixed", fresh: bool = False) -> HttpRequest:
    """The recorded request `index` (fresh: the same request as a new run would send it)."""
    if shape == "one-path":
        query = f"q=term{index}&page=1&ts={1_700_000_000 + index + (500 if fresh else 0)}"
        return HttpRequest("GET", "http", HOST, 80, "/api/v1/search", query, headers=REQUEST_HEADERS)
    match index % 4:
        case 0:
            return HttpRequest("GET", "http", HOST, 80, f"/api/v1/users/{index}", headers=REQUEST_HEADERS)
        case 1:
            return HttpRequest(
                "POST",
                "http",
                HOST,
                80,
                f"/api/v1/threads/{index}/messages",
                headers=JSON_HEADERS,
                body=_body(index, fresh),
            )
        case 2:
            return HttpRequest(
                "GET",
                "http",
                HOST,
                80,
                f"/api/v1/items/{index}",
                f"include=details&page={index % 7}",
                headers=REQUEST_HEADERS,
            )
        case _:
            return HttpRequest(
                "PUT", "http", HOST, 80, f"/api/v1/settings/{index}", headers=JSON_HEADERS, body=_body(index, fresh)
            )


def make_response(index: int) -> HttpResponse:
    body = json.dumps({"ok": True, "index": index, "items": [{"n": n, "name": f"item {n}"} for n in range(3)]}).encode()
    return HttpResponse(200, "OK", headers=(*RESPONSE_HEADERS, ("Content-Length", str(len(body)))), body=body)


def write_wsreplay_cassette(path: Path, count: int, shape: str) -> None:
    records = [
        HttpExchange(index + 1, index * 0.01, make_request(index, shape=shape), make_response(index), 0.005)
        for index in range(count)
    ]
    header = CassetteHeader(created=1700000000.0, wsreplay_version="bench", upstream=f"reverse:http://{HOST}")
    write_cassette(path, Cassette(header, records), overwrite=True)


@dataclass
class Prepared:
    """A loaded cassette ready to be timed: facts about it and one pass of live lookups."""

    info: dict[str, Any]
    calls: list[Callable[[], Any]]

    def per_call(self, min_seconds: float) -> float:
        """Seconds per lookup: whole passes over the lookups until `min_seconds` have passed."""
        done = 0
        started = time.perf_counter()
        while True:
            for call in self.calls:
                call()
            done += len(self.calls)
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                return elapsed / done


def _timed_loads(load: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median seconds of `repeats` loads, all the samples, and the last load's result."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = load()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples, result


def prepare_wsreplay(directory: Path, count: int, shape: str, lookups: int, load_repeats: int = 3) -> Prepared:
    """Write a wsreplay cassette of `count` exchanges, time loading (+ indexing) it, check the answers."""
    path = directory / f"http-{shape}-{count}.cassette"
    write_wsreplay_cassette(path, count, shape)
    load_seconds, load_samples, session = _timed_loads(
        lambda: ReplaySession(CassetteFile(path), ReplayOptions(speed=None)), load_repeats
    )
    rng = random.Random(count)
    targets = [rng.randrange(count) for _ in range(lookups)]
    live = [make_request(index, shape=shape, fresh=True) for index in targets]
    for request, index in zip(live, targets, strict=True):
        found = session.answer_http(request)
        if found.response.status != 200 or json.loads(found.response.body)["index"] != index:
            raise RuntimeError(f"wsreplay did not match exchange {index}: {found.response.status}")
    info = {
        "exchanges": count,
        "shape": shape,
        "file_bytes": path.stat().st_size,
        "load_seconds": load_seconds,
        "load_samples": load_samples,
        "lookups": lookups,
    }
    return Prepared(info, [lambda r=r: session.answer_http(r) for r in live])


def vcrpy_available() -> bool:
    try:
        import vcr  # noqa: F401
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def _vcr_request(request: HttpRequest):
    from vcr.request import Request

    uri = f"{request.scheme}://{request.host}{request.target}"
    return Request(request.method, uri, request.body or None, dict(request.headers))


def write_vcrpy_cassette(path: Path, count: int, shape: str) -> None:
    from vcr.serialize import serialize
    from vcr.serializers import yamlserializer

    requests = [_vcr_request(make_request(index, shape=shape)) for index in range(count)]
    responses = []
    for index in range(count):
        response = make_response(index)
        headers: dict[str, list[str]] = {}
        for name, value in response.headers:
            headers.setdefault(name, []).append(value)
        responses.append(
            {
                "status": {"code": response.status, "message": response.reason},
                "headers": headers,
                "body": {"string": response.body},
            }
        )
    path.write_text(serialize({"requests": requests, "responses": responses}, yamlserializer))


def prepare_vcrpy(directory: Path, count: int, shape: str, lookups: int, load_repeats: int = 3) -> Prepared:
    """The same with vcrpy: a YAML cassette of `count` exchanges, loaded with ``Cassette.load``."""
    import vcr
    from vcr import matchers
    from vcr.cassette import Cassette as VcrCassette
    from vcr.record_mode import RecordMode

    path = directory / f"http-{shape}-{count}.yaml"
    write_vcrpy_cassette(path, count, shape)
    match_on = (matchers.method, matchers.scheme, matchers.host, matchers.port, matchers.path, matchers.query)
    load_seconds, load_samples, cassette = _timed_loads(
        lambda: VcrCassette.load(
            path=str(path), match_on=match_on, record_mode=RecordMode.NONE, allow_playback_repeats=True
        ),
        load_repeats,
    )
    if len(cassette) != count:
        raise RuntimeError(f"vcrpy loaded {len(cassette)} interactions, expected {count}")
    rng = random.Random(count)
    targets = [rng.randrange(count) for _ in range(lookups)]
    live = [_vcr_request(make_request(index, shape=shape)) for index in targets]
    for request, index in zip(live, targets, strict=True):
        if json.loads(cassette.play_response(request)["body"]["string"])["index"] != index:
            raise RuntimeError(f"vcrpy did not match exchange {index}")
    info = {
        "exchanges": count,
        "shape": shape,
        "file_bytes": path.stat().st_size,
        "load_seconds": load_seconds,
        "load_samples": load_samples,
        "lookups": lookups,
        "vcrpy_version": vcr.__version__,
    }
    return Prepared(info, [lambda r=r: cassette.play_response(r) for r in live])
