"""The out-of-money refusal (SPEC §8b, `wire.refusals`): the official SDKs, with retries on,
raise it after ONE request with the relay's message; the message says what is needed,
held and left, and what cap would fit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import orjson
import pytest

from quotaledger.wire import refusals
from quotaledger.wire.refusals import Refusal, Shortfall

SHORT = Shortfall(
    needed=16_740, available=500, funding="the account", held=12_000, fitting_cap=0,
    minimum_output=1024,
)  # fmt: skip
FITS = Shortfall(needed=16_740, available=9_000, funding="this API key", fitting_cap=700)


class _Refusing:
    """A loopback server answering every POST with one refusal, counting the requests."""

    def __init__(self, answer: Refusal) -> None:
        self.answer, self.requests = answer, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(outer.answer.status)
                for name, value in outer.answer.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(outer.answer.body)))
                self.end_headers()
                self.wfile.write(outer.answer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def refusing() -> Iterator[type[_Refusing]]:
    made: list[_Refusing] = []

    def make(answer: Refusal) -> _Refusing:
        made.append(_Refusing(answer))
        return made[-1]

    yield make  # type: ignore[misc]
    for server in made:
        server.server.shutdown()
        server.server.server_close()


def test_the_message_says_what_is_needed_held_left_and_what_would_fit() -> None:
    text = refusals.message(SHORT)
    assert "needs at least 16,740 quota ($0.0334) and 500 ($0.0010) remain in the account" in text
    assert "12,000 quota is held by requests still running" in text
    assert "The prompt alone costs more than remains" in text
    assert "An output cap of 700 tokens would fit" in refusals.message(FITS)


def test_openai_chat_sdk_raises_at_once_on_402(refusing) -> None:  # type: ignore[no-untyped-def]
    server = refusing(refusals.refusal("chat", SHORT))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-ql-x", max_retries=3)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert server.requests == 1
    assert raised.value.status_code == 402
    assert raised.value.code == "insufficient_quota"
    assert refusals.message(SHORT) in str(raised.value)


def test_openai_responses_sdk_raises_at_once_with_the_message(refusing) -> None:  # type: ignore[no-untyped-def]
    server = refusing(refusals.refusal("responses", SHORT))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-ql-x", max_retries=3)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="m", input="hi", stream=True)
    assert server.requests == 1
    assert raised.value.code == "insufficient_quota"
    assert refusals.message(SHORT) in str(raised.value)


def test_anthropic_sdk_raises_at_once_on_402_billing_error(refusing) -> None:  # type: ignore[no-untyped-def]
    server = refusing(refusals.refusal("messages", SHORT))
    client = anthropic.Anthropic(base_url=server.url, api_key="sk-ql-x", max_retries=3)
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        client.messages.stream(  # as Claude Code calls it: streamed, max_tokens 32000
            model="claude-sonnet-4-5",
            max_tokens=32_000,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream,  # fmt: skip
    ):
        stream.until_done()
    assert server.requests == 1
    assert raised.value.status_code == 402
    assert raised.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert refusals.message(SHORT) in str(raised.value)


def test_even_a_status_an_sdk_would_retry_is_not_retried_with_the_header(refusing) -> None:  # type: ignore[no-untyped-def]
    refusal = refusals.refusal("chat", SHORT)
    server = refusing(Refusal(429, refusal.body, refusal.headers))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-ql-x", max_retries=3)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert server.requests == 1


def test_gemini_gets_googles_envelope() -> None:
    answer = refusals.refusal("gemini", SHORT)
    body = orjson.loads(answer.body)
    assert answer.status == 402 and body["error"]["code"] == 402
    assert body["error"]["message"] == refusals.message(SHORT)
    assert ("x-should-retry", "false") in answer.headers
