"""The front door: its routes answer complete or streamed, in their own refusal format, and
every unexpected error, on its routes or the framework's, is one logged 500."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from starlette.testclient import TestClient

from quotaledger.server.app import create_app
from quotaledger.server.calls import Answer, Call, Stream
from quotaledger.server.errors import HTTPError
from quotaledger.server.front_door import FrontDoor, Route
from quotaledger.settings import Settings
from quotaledger.store.database import Database


async def _events(call: Call) -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"data: {n}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return Stream(200, chunks(), headers=[(b"x-request-id", b"req-1")])


def _openai_error(status: int, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


async def _refuses(call: Call) -> Answer:
    raise HTTPError(400, "model: required")


async def _breaks(call: Call) -> Answer:
    raise RuntimeError("secret internals")


@pytest.fixture
def door(settings: Settings, database: Database) -> FrontDoor:
    app = create_app(settings, database)
    app.routes[("POST", "/v1/events")] = Route(_events, {})
    app.routes[("POST", "/v1/refused")] = Route(_refuses, {}, _openai_error)
    app.routes[("GET", "/api/breaks")] = Route(_breaks, {})
    return app


def test_a_streamed_answer_arrives_event_by_event_finished_but_never_gzipped(
    door: FrontDoor,
) -> None:
    with (
        TestClient(door) as client,
        client.stream("POST", "/v1/events", headers={"Accept-Encoding": "gzip"}) as answer,
    ):
        chunks = list(answer.iter_raw())

    assert answer.status_code == 200
    assert b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    assert answer.headers["content-type"] == "text/event-stream"
    assert answer.headers["x-request-id"] == "req-1"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in answer.headers
    assert door.services.metrics.render().count(b'method="POST",status="200"') == 1


def test_a_route_writes_its_refusals_in_its_own_format(door: FrontDoor) -> None:
    with TestClient(door) as client:
        answer = client.post("/v1/refused", json={})

    assert answer.status_code == 400
    assert answer.json() == {
        "error": {"message": "model: required", "type": "invalid_request_error"}
    }


def test_an_unexpected_error_is_one_logged_500_on_either_side_of_the_door(
    door: FrontDoor, caplog: pytest.LogCaptureFixture
) -> None:
    @door.framework.get("/api/framework-breaks")  # type: ignore[attr-defined]
    async def framework_breaks() -> None:
        raise RuntimeError("secret internals")

    with TestClient(door, raise_server_exceptions=False) as client:
        for path in ("/api/breaks", "/api/framework-breaks"):
            caplog.clear()
            answer = client.get(path)

            assert answer.status_code == 500
            assert answer.json() == {
                "success": False,
                "message": "internal server error",
                "data": None,
            }
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert [r.getMessage() for r in errors] == [f"unexpected error on GET {path}"]
            assert "secret internals" not in answer.text


def test_a_template_takes_one_segment_at_its_end_or_any_name_before_its_method(
    door: FrontDoor,
) -> None:
    """`/v1/models/{model}` takes one segment; a Gemini route's `{model}` comes before its
    `:method` and may hold a `/` (`models/google/gemini-2.5-pro:generateContent`)."""
    model = door.routes[("GET", "/v1/models/{model}")]
    generate = door.routes[("POST", "/v1beta/models/{model}:generateContent")]
    stream = door.routes[("POST", "/v1beta/models/{model}:streamGenerateContent")]
    assert door.route("GET", "/v1/models/gpt-4o") is model
    assert door.route("GET", "/v1/models/openai/gpt-4o") is None
    assert door.route("POST", "/v1beta/models/gemini-2.5-pro:generateContent") is generate
    assert door.route("POST", "/v1beta/models/google/gemini-2.5-pro:generateContent") is generate
    assert door.route("POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent") is stream
    assert door.route("POST", "/v1beta/models/:generateContent") is None  # no model
    assert door.route("POST", "/v1beta/models/gemini-2.5-pro:predict") is None
