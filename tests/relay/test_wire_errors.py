"""Our own errors, in each envelope, make the official SDKs raise their matching exceptions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anthropic
import openai
import pytest
from aiohttp import web
from wire_support import serve_app

from quotaledger.wire.errors import (
    WireFormat,
    anthropic_stream_error,
    error_body,
    openai_error,
    openai_stream_error,
)

OPENAI_CASES = [
    (401, openai.AuthenticationError),
    (402, openai.APIStatusError),
    (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError),
    (413, openai.APIStatusError),
    (429, openai.RateLimitError),
    (502, openai.InternalServerError),
    (503, openai.InternalServerError),
    (504, openai.InternalServerError),
]
ANTHROPIC_CASES = [
    (401, anthropic.AuthenticationError, "authentication_error"),
    (402, anthropic.PaymentRequiredError, "billing_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (404, anthropic.NotFoundError, "not_found_error"),
    (413, anthropic.ContentTooLargeError, "request_too_large"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (502, anthropic.InternalServerError, "api_error"),
    (504, anthropic.InternalServerError, "timeout_error"),
]
MESSAGE_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","content":[],"model":"m","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
)
CHAT_CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
)


@pytest.fixture(scope="module")
def ours() -> Iterator[tuple[str, list[str]]]:
    """A server answering our error for the status in the path; counts the requests."""
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        status = int(request.match_info["status"])
        wire = WireFormat(request.match_info["wire"])
        body = error_body(wire, status, f"refused with {status}")
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.Response(
            status=status, body=body, content_type="application/json", headers=headers
        )

    async def broken_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if request.match_info["wire"] == "anthropic":
            await response.write(MESSAGE_START + anthropic_stream_error("upstream failed"))
        else:
            await response.write(CHAT_CHUNK + openai_stream_error("upstream failed"))
        return response

    app = web.Application()
    app.router.add_post("/{wire}/{status:\\d+}/v1/chat/completions", refuse)
    app.router.add_post("/{wire}/{status:\\d+}/v1/messages", refuse)
    app.router.add_post("/{wire}/stream/v1/chat/completions", broken_stream)
    app.router.add_post("/{wire}/stream/v1/messages", broken_stream)
    with serve_app(app) as url:
        yield url, seen


@contextlib.contextmanager
def _openai(url: str, path: str, retries: int = 0) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{url}/{path}/v1", api_key="sk-ql-test", max_retries=retries
    ) as client:
        yield client


@contextlib.contextmanager
def _anthropic(url: str, path: str, retries: int = 0) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=f"{url}/{path}", api_key="sk-ql-test", max_retries=retries
    ) as client:
        yield client


@pytest.mark.parametrize(("status", "exception"), OPENAI_CASES)
def test_openais_sdk_raises_the_matching_exception(
    ours: tuple[str, list[str]], status: int, exception: type[Exception]
) -> None:
    url, _ = ours
    with _openai(url, f"openai/{status}") as client, pytest.raises(exception) as raised:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    assert isinstance(raised.value, openai.APIStatusError) and raised.value.status_code == status
    assert raised.value.body == openai_error(status, f"refused with {status}")["error"]


def test_a_402_is_not_retried_by_either_sdk(ours: tuple[str, list[str]]) -> None:
    url, seen = ours
    before = len(seen)
    with _openai(url, "openai/402", retries=2) as client, pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="m", messages=[])
    with (
        _anthropic(url, "anthropic/402", retries=2) as claude,
        pytest.raises(anthropic.APIStatusError),
    ):
        claude.messages.create(model="m", max_tokens=1, messages=[])
    assert len(seen) == before + 2


@pytest.mark.parametrize(("status", "exception", "kind"), ANTHROPIC_CASES)
def test_anthropics_sdk_raises_the_matching_exception(
    ours: tuple[str, list[str]], status: int, exception: type[Exception], kind: str
) -> None:
    url, _ = ours
    with _anthropic(url, f"anthropic/{status}") as client, pytest.raises(exception) as raised:
        client.messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "Hi"}]
        )
    assert isinstance(raised.value, anthropic.APIStatusError)
    assert raised.value.body == {
        "type": "error",
        "error": {"type": kind, "message": f"refused with {status}"},
    }


def test_our_mid_stream_error_makes_openais_sdk_raise(ours: tuple[str, list[str]]) -> None:
    url, _ = ours
    received = []
    with (
        _openai(url, "openai/stream") as client,
        pytest.raises(openai.APIError, match="upstream failed"),
    ):
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hi"]


def test_our_mid_stream_error_event_makes_anthropics_sdk_raise(ours: tuple[str, list[str]]) -> None:
    url, _ = ours
    question = [{"role": "user", "content": "Hi"}]
    with (
        _anthropic(url, "anthropic/stream") as client,
        pytest.raises(anthropic.APIStatusError, match="upstream failed"),
        client.messages.stream(model="m", max_tokens=5, messages=question) as stream,  # type: ignore[arg-type]
    ):
        for _ in stream:
            pass
