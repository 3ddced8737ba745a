"""The example upstream speaks each format and plays the faults it is told to (examples/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from wire_support import EXAMPLE

from support import free_port

CHAT = {"model": "fake-gpt", "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {
    "model": "claude-fake",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Hi"}],
}


def _events(raw: bytes) -> list[str]:
    return [block for block in raw.decode().split("\n\n") if block]


def _data(block: str) -> Any:
    line = next(line for line in block.splitlines() if line.startswith("data: "))
    return json.loads(line[6:])


def _scenario(**fields: Any) -> dict[str, str]:
    return {"X-Fake-Scenario": json.dumps(fields)}


def test_a_chat_stream_with_include_usage_ends_with_a_usage_chunk_then_done(
    fake_upstream: Any,
) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    raw = httpx.post(fake_upstream.base_url + "/v1/chat/completions", json=body).content
    events = _events(raw)
    assert events[-1] == "data: [DONE]"
    usage_chunk = _data(events[-2])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 9
    assert all(_data(e)["usage"] is None for e in events[:-2])


def test_a_chat_stream_without_include_usage_carries_no_usage(fake_upstream: Any) -> None:
    raw = httpx.post(
        fake_upstream.base_url + "/v1/chat/completions", json={**CHAT, "stream": True}
    ).content
    assert b'"usage"' not in raw and raw.endswith(b"data: [DONE]\n\n")


def test_tool_calls_are_streamed_as_argument_deltas(fake_upstream: Any) -> None:
    body = {**CHAT, "stream": True}
    raw = httpx.post(
        fake_upstream.base_url + "/v1/chat/completions",
        json=body,
        headers=_scenario(tool_call=True),
    ).content
    deltas = [_data(e)["choices"][0]["delta"] for e in _events(raw)[:-1]]
    arguments = "".join(
        d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d
    )
    assert json.loads(arguments) == {"location": "Paris, France", "unit": "celsius"}


def test_a_scripted_529_answers_only_the_path_it_names_with_anthropics_body(
    fake_upstream: Any,
) -> None:
    fake_upstream.upstream.script(path="/v1/messages", status=529)
    chat = httpx.post(fake_upstream.base_url + "/v1/chat/completions", json=CHAT)
    refused = httpx.post(fake_upstream.base_url + "/v1/messages", json=MESSAGES)
    again = httpx.post(fake_upstream.base_url + "/v1/messages", json=MESSAGES)
    assert chat.status_code == 200 and again.status_code == 200
    assert refused.status_code == 529
    assert refused.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_the_control_endpoint_queues_a_scenario_over_http(fake_upstream: Any) -> None:
    script = {"scenario": {"status": 429, "retry_after": 3}, "times": 2}
    httpx.post(fake_upstream.base_url + "/_control/script", json=script).raise_for_status()
    answers = [
        httpx.post(fake_upstream.base_url + "/v1/chat/completions", json=CHAT) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[0].json()["error"]["code"] == "rate_limit_exceeded"


def test_an_unknown_scenario_field_is_refused_by_the_control_endpoint(fake_upstream: Any) -> None:
    answer = httpx.post(
        fake_upstream.base_url + "/_control/script", json={"scenario": {"stauts": 500}}
    )
    assert answer.status_code == 400 and "stauts" in answer.json()["error"]


def test_every_request_is_recorded_with_its_query_headers_and_body(fake_upstream: Any) -> None:
    headers = {"x-api-key": "upstream-key", "anthropic-version": "2023-06-01"}
    httpx.post(fake_upstream.base_url + "/v1/messages?beta=true", json=MESSAGES, headers=headers)
    seen = httpx.get(fake_upstream.base_url + "/_control/requests").json()
    assert len(seen) == 1
    assert seen[0]["path"] == "/v1/messages" and seen[0]["query"] == "beta=true"
    recorded = fake_upstream.upstream.requests[0]
    assert recorded.header("anthropic-version") == "2023-06-01" and recorded.json() == MESSAGES


def test_a_reset_after_n_events_breaks_the_stream_there(fake_upstream: Any) -> None:
    received: list[bytes] = []
    with (
        pytest.raises(httpx.HTTPError),
        httpx.stream(
            "POST",
            fake_upstream.base_url + "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers=_scenario(reset_after=3),
        ) as response,
    ):
        for chunk in response.iter_bytes():
            received.append(chunk)
    assert b"".join(received).count(b"data: ") == 3


def test_a_client_that_leaves_a_stalled_stream_is_counted_as_a_cancellation(
    fake_upstream: Any,
) -> None:
    with httpx.stream(
        "POST",
        fake_upstream.base_url + "/v1/messages",
        json={**MESSAGES, "stream": True},
        headers=_scenario(stall_after=2),
    ) as response:
        next(response.iter_bytes())
    deadline = time.monotonic() + 5
    while fake_upstream.upstream.cancellations == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_upstream.upstream.cancellations == 1
    assert fake_upstream.upstream.completed_streams == 0


def test_message_start_can_say_zero_input_with_the_truth_in_message_delta(
    fake_upstream: Any,
) -> None:
    raw = httpx.post(
        fake_upstream.base_url + "/v1/messages",
        json={**MESSAGES, "stream": True},
        headers=_scenario(zero_input_in_start=True, input_tokens=40, cache_read=300),
    ).content
    events = _events(raw)
    start, delta = _data(events[0]), _data(events[-2])
    assert start["message"]["usage"]["input_tokens"] == 0
    assert delta["usage"]["input_tokens"] == 40 and delta["usage"]["cache_read_input_tokens"] == 300


def test_a_responses_stream_can_end_without_its_terminal_event(fake_upstream: Any) -> None:
    body = {"model": "fake-gpt", "input": "Hi", "stream": True}
    whole = _events(httpx.post(fake_upstream.base_url + "/v1/responses", json=body).content)
    cut = _events(
        httpx.post(
            fake_upstream.base_url + "/v1/responses", json=body, headers=_scenario(no_terminal=True)
        ).content
    )
    assert whole[-1].startswith("event: response.completed")
    assert len(cut) == len(whole) - 1 and cut[-1].startswith("event: response.output_item.done")


def test_a_trickled_stream_arrives_one_byte_at_a_time(fake_upstream: Any) -> None:
    url = fake_upstream.base_url + "/v1/chat/completions"
    whole = httpx.post(url, json={**CHAT, "stream": True}).content
    pieces: list[bytes] = []
    headers = _scenario(trickle=0.0005)
    with httpx.stream("POST", url, json={**CHAT, "stream": True}, headers=headers) as response:
        for piece in response.iter_raw():
            pieces.append(piece)
            if len(pieces) == 40:
                break
    assert all(len(piece) == 1 for piece in pieces)
    assert b"".join(pieces)[:22] == whole[:22] == b'data: {"id":"chatcmpl-'


@pytest.mark.slow
def test_n_events_are_spread_over_the_duration_asked(fake_upstream: Any) -> None:
    started = time.monotonic()
    httpx.post(
        fake_upstream.base_url + "/v1/responses",
        json={"model": "fake-gpt", "input": "Hi", "stream": True},
        headers=_scenario(duration=1.0),
    )
    assert time.monotonic() - started >= 0.9


def test_models_are_listed_in_anthropics_shape_when_anthropic_version_is_sent(
    fake_upstream: Any,
) -> None:
    openai_list = httpx.get(fake_upstream.base_url + "/v1/models").json()
    anthropic_list = httpx.get(
        fake_upstream.base_url + "/v1/models", headers={"anthropic-version": "2023-06-01"}
    ).json()
    assert openai_list["object"] == "list" and openai_list["data"][0]["object"] == "model"
    assert anthropic_list["has_more"] is False and anthropic_list["data"][0]["type"] == "model"


def test_the_example_runs_from_the_command_line(tmp_path: Any) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT)
        assert answer.json()["choices"][0]["message"]["content"].startswith("Hello")
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_a_slow_first_byte_delays_the_status_line(fake_upstream: Any) -> None:
    started = time.monotonic()
    answer = httpx.post(
        fake_upstream.base_url + "/v1/chat/completions",
        json=CHAT,
        headers=_scenario(first_byte_delay=0.3),
    )
    assert answer.status_code == 200 and time.monotonic() - started >= 0.3


def test_a_client_that_gives_up_during_a_slow_first_byte_is_a_cancellation(
    fake_upstream: Any,
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            fake_upstream.base_url + "/v1/messages",
            json=MESSAGES,
            headers=_scenario(first_byte_delay=5),
            timeout=0.2,
        )
    deadline = time.monotonic() + 5
    while fake_upstream.upstream.cancellations == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_upstream.upstream.cancellations == 1


def test_an_error_after_n_events_is_the_formats_error_event(fake_upstream: Any) -> None:
    url = fake_upstream.base_url
    chat = _events(
        httpx.post(
            url + "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers=_scenario(error_after=2),
        ).content
    )
    assert len(chat) == 3 and _data(chat[-1])["error"]["type"] == "server_error"
    messages = _events(
        httpx.post(
            url + "/v1/messages",
            json={**MESSAGES, "stream": True},
            headers=_scenario(error_after=2),
        ).content
    )
    assert (
        messages[-1].startswith("event: error")
        and _data(messages[-1])["error"]["type"] == "overloaded_error"
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages"])
def test_no_usage_means_no_usage_anywhere_in_the_answer(fake_upstream: Any, path: str) -> None:
    body = {**MESSAGES, "input": "Hi", "stream": True, "stream_options": {"include_usage": True}}
    raw = httpx.post(
        fake_upstream.base_url + path, json=body, headers=_scenario(usage="none")
    ).content
    assert b'"usage":{' not in raw and b"input_tokens" not in raw and b"prompt_tokens" not in raw


def test_a_scenario_header_with_a_typo_is_answered_400_naming_it(fake_upstream: Any) -> None:
    answer = httpx.post(
        fake_upstream.base_url + "/v1/messages", json=MESSAGES, headers=_scenario(stauts=529)
    )
    assert answer.status_code == 400 and "stauts" in answer.text


# ---------------------------------------------------------------- Gemini

GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
GOOGLE_KEY = {"x-goog-api-key": "upstream-key"}


def _gemini_url(fake_upstream: Any, method: str, version: str = "v1beta") -> str:
    return f"{fake_upstream.base_url}/{version}/models/gemini-fake:{method}"


def _sse_chunks(raw: bytes) -> list[Any]:
    """Google's events end in \\r\\n\\r\\n; each is one GenerateContentResponse."""
    blocks = [b for b in raw.split(b"\r\n\r\n") if b]
    assert all(b.startswith(b"data: ") for b in blocks) and raw.endswith(b"\r\n\r\n")
    return [json.loads(b[6:]) for b in blocks]


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_gemini_answers_whole_with_usage_in_googles_shape(fake_upstream: Any, version: str) -> None:
    from google.genai import types

    answer = httpx.post(
        _gemini_url(fake_upstream, "generateContent", version),
        json=GEMINI,
        headers={**GOOGLE_KEY, **_scenario(input_tokens=30, cache_read=70, reasoning_tokens=4)},
    )
    parsed = types.GenerateContentResponse.model_validate(answer.json())
    assert parsed.text == "Hello from the fake upstream! How can I help?"
    assert parsed.candidates[0].finish_reason == types.FinishReason.STOP
    usage = parsed.usage_metadata
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (100, 70)
    assert (usage.candidates_token_count, usage.thoughts_token_count) == (9, 4)


def test_gemini_streams_events_with_the_whole_usage_on_the_last(fake_upstream: Any) -> None:
    from google.genai import types

    raw = httpx.post(
        _gemini_url(fake_upstream, "streamGenerateContent") + "?alt=sse",
        json={**GEMINI, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}},
        headers={**GOOGLE_KEY, **_scenario(reasoning_tokens=5)},
    ).content
    chunks = [types.GenerateContentResponse.model_validate(c) for c in _sse_chunks(raw)]
    assert chunks[0].candidates[0].content.parts[0].thought is True
    assert all(c.usage_metadata.candidates_token_count is None for c in chunks[:-1])
    assert chunks[-1].usage_metadata.thoughts_token_count == 5
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_gemini_streams_one_json_array_without_alt_sse(fake_upstream: Any) -> None:
    answer = httpx.post(
        _gemini_url(fake_upstream, "streamGenerateContent"), json=GEMINI, headers=GOOGLE_KEY
    )
    assert answer.headers["content-type"].startswith("application/json")
    chunks = answer.json()
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == "Hello from the fake upstream! How can I help?"


def test_gemini_cuts_its_answer_at_max_output_tokens(fake_upstream: Any) -> None:
    body = {**GEMINI, "generationConfig": {"maxOutputTokens": 3}}
    answer = httpx.post(
        _gemini_url(fake_upstream, "generateContent"), json=body, headers=GOOGLE_KEY
    ).json()
    assert answer["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "Hello from the "}]


def test_a_gemini_tool_call_is_a_function_call_part_with_a_thought_signature(
    fake_upstream: Any,
) -> None:
    from google.genai import types

    answer = httpx.post(
        _gemini_url(fake_upstream, "generateContent"),
        json=GEMINI,
        headers={**GOOGLE_KEY, **_scenario(tool_call=True, tool_name="run_shell_command",
                                           tool_arguments='{"command": "ls"}')},
    )  # fmt: skip
    [part] = types.GenerateContentResponse.model_validate(answer.json()).candidates[0].content.parts
    assert part.function_call.name == "run_shell_command"
    assert part.function_call.args == {"command": "ls"} and part.thought_signature


def test_gemini_refuses_in_googles_shape_and_without_a_key(fake_upstream: Any) -> None:
    from google.genai import errors

    url = _gemini_url(fake_upstream, "generateContent")
    limited = httpx.post(url, json=GEMINI, headers={**GOOGLE_KEY, **_scenario(status=429)})
    assert limited.json()["error"] == {
        "code": 429,
        "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
    }
    with pytest.raises(errors.ClientError) as raised:
        errors.APIError.raise_for_response(httpx.post(url, json=GEMINI))  # no key
    assert (raised.value.code, raised.value.status) == (403, "PERMISSION_DENIED")
    assert httpx.post(url + "?key=upstream-key", json=GEMINI).status_code == 200


def test_a_gemini_stream_error_is_an_error_chunk(fake_upstream: Any) -> None:
    raw = httpx.post(
        _gemini_url(fake_upstream, "streamGenerateContent") + "?alt=sse",
        json=GEMINI,
        headers={**GOOGLE_KEY, **_scenario(error_after=2)},
    ).content
    chunks = _sse_chunks(raw)
    assert len(chunks) == 3 and chunks[-1]["error"]["status"] == "INTERNAL"


def test_gemini_counts_embeds_and_lists_its_models(fake_upstream: Any) -> None:
    count = httpx.post(
        _gemini_url(fake_upstream, "countTokens"),
        json=GEMINI,
        headers={**GOOGLE_KEY, **_scenario(input_tokens=77)},
    )
    assert count.json()["totalTokens"] == 77
    one = httpx.post(
        _gemini_url(fake_upstream, "embedContent"),
        json={"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
        headers=GOOGLE_KEY,
    ).json()
    assert len(one["embedding"]["values"]) == 3
    requests = [{"model": "models/gemini-fake", "content": {"parts": [{"text": t}]}} for t in "ab"]
    batch = httpx.post(
        _gemini_url(fake_upstream, "batchEmbedContents"),
        json={"requests": requests},
        headers=GOOGLE_KEY,
    ).json()
    assert len(batch["embeddings"]) == 2
    for version in ("v1beta", "v1"):
        listed = httpx.get(f"{fake_upstream.base_url}/{version}/models", headers=GOOGLE_KEY)
        assert listed.json()["models"][0]["name"] == "models/gemini-fake"
