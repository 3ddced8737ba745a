"""The official SDKs, pointed straight at the fake upstream, accept every format it speaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

QUESTION: Any = [{"role": "user", "content": "Hi"}]
ANSWER = "Hello from the fake upstream! How can I help?"


@pytest.fixture
def gpt(fake_upstream: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=fake_upstream.base_url + "/v1", api_key="sk-fake", max_retries=0
    ) as client:
        yield client


@pytest.fixture
def claude(fake_upstream: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake_upstream.base_url, api_key="sk-fake", max_retries=0
    ) as client:
        yield client


def test_openai_chat_non_stream(gpt: openai.OpenAI) -> None:
    completion = gpt.chat.completions.create(model="fake-gpt", messages=QUESTION)
    assert completion.choices[0].message.content == ANSWER
    assert completion.system_fingerprint == "fp_fake0upstream"
    assert completion.usage is not None and completion.usage.completion_tokens == 9


def test_openai_chat_stream_with_usage(gpt: openai.OpenAI) -> None:
    chunks = list(
        gpt.chat.completions.create(
            model="fake-gpt", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 9


def test_openai_chat_stream_of_a_tool_call(gpt: openai.OpenAI, fake_upstream: Any) -> None:
    fake_upstream.upstream.script(tool_call=True)
    with gpt.chat.completions.stream(model="fake-gpt", messages=QUESTION) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["location"] == "Paris, France"  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_embeddings_as_base64_and_floats(gpt: openai.OpenAI) -> None:
    default = gpt.embeddings.create(model="fake-embedding", input=["a", "b"])  # the SDK asks base64
    floats = gpt.embeddings.create(model="fake-embedding", input="a", encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert default.usage.prompt_tokens == 8


def test_openai_models(gpt: openai.OpenAI) -> None:
    assert "fake-gpt" in [m.id for m in gpt.models.list()]


def test_openai_responses_non_stream(gpt: openai.OpenAI) -> None:
    response = gpt.responses.create(model="fake-gpt", input="Hi")
    assert response.output_text == ANSWER and response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens == 9


def test_openai_responses_stream_with_cached_and_reasoning_tokens(
    gpt: openai.OpenAI, fake_upstream: Any
) -> None:
    fake_upstream.upstream.script(cache_read=64, reasoning_tokens=5, input_tokens=10)
    with gpt.responses.stream(model="fake-gpt", input="Hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == ANSWER == final.output_text
    assert final.usage is not None and final.usage.input_tokens == 74
    assert final.usage.input_tokens_details.cached_tokens == 64
    assert final.usage.output_tokens_details.reasoning_tokens == 5


def test_anthropic_messages_non_stream(claude: anthropic.Anthropic, fake_upstream: Any) -> None:
    fake_upstream.upstream.script(cache_read=100, cache_write_1h=30, input_tokens=12)
    message = claude.messages.create(model="claude-fake", max_tokens=100, messages=QUESTION)
    assert message.content[0].type == "text" and message.content[0].text == ANSWER
    assert message.usage.input_tokens == 12 and message.usage.cache_read_input_tokens == 100
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 30


def test_anthropic_messages_stream_with_thinking_and_zero_input_in_start(
    claude: anthropic.Anthropic, fake_upstream: Any
) -> None:
    fake_upstream.upstream.script(zero_input_in_start=True, input_tokens=40, reasoning_tokens=4)
    with claude.messages.stream(model="claude-fake", max_tokens=100, messages=QUESTION) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.usage.input_tokens == 40 and final.usage.output_tokens == 13


def test_anthropic_tool_use_stream(claude: anthropic.Anthropic, fake_upstream: Any) -> None:
    fake_upstream.upstream.script(tool_call=True)
    with claude.messages.stream(model="claude-fake", max_tokens=100, messages=QUESTION) as stream:
        final = stream.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use" and block.input == {
        "location": "Paris, France",
        "unit": "celsius",
    }
    assert final.stop_reason == "tool_use"


def test_anthropic_count_tokens_and_models(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model="claude-fake", messages=QUESTION)
    assert counted.input_tokens > 0
    assert "claude-fake" in [m.id for m in claude.models.list()]


def test_an_upstream_529_reaches_the_anthropic_sdk_as_overloaded(
    claude: anthropic.Anthropic, fake_upstream: Any
) -> None:
    fake_upstream.upstream.script(status=529)
    with pytest.raises(anthropic.OverloadedError) as raised:
        claude.messages.create(model="claude-fake", max_tokens=100, messages=QUESTION)
    body = raised.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_an_anthropic_error_event_mid_stream_raises_in_the_sdk(
    claude: anthropic.Anthropic, fake_upstream: Any
) -> None:
    fake_upstream.upstream.script(error_after=5)
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        claude.messages.stream(model="claude-fake", max_tokens=100, messages=QUESTION) as stream,
    ):
        for _ in stream:
            pass
