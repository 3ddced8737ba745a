"""Local token counting: offline, exact where it says so, and prompts of every format."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from quotaledger.wire import counting

SPEC = Path("/work/shared/SPEC.md")


def test_counting_works_with_the_network_blocked_and_no_tokenizer_cache(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise AssertionError("network access attempted")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from quotaledger.wire import counting
        print(counting.count_text("Hello, world! How are you today?"))
        """
    )
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(cache),
        "DATA_GYM_CACHE_DIR": str(cache),
        "TMPDIR": str(tmp_path),
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "9"
    assert not cache.exists()  # nothing was fetched, nothing cached


def test_cl100k_counts_match_the_published_examples() -> None:
    # tiktoken's README and OpenAI's cookbook: "tiktoken is great!" is 6 cl100k tokens.
    assert counting.count_text("tiktoken is great!") == 6
    assert (
        counting.encoding().decode(counting.encoding().encode_ordinary("héllo 世界"))
        == "héllo 世界"
    )


def test_a_tampered_tokenizer_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "data" / "cl100k_base.tiktoken"
    fake.parent.mkdir()
    fake.write_bytes(b"IQ== 0\n")
    monkeypatch.setattr(counting, "_rank_file", lambda: fake)
    counting.encoding.cache_clear()
    try:
        with pytest.raises(counting.TokenizerDataError):
            counting.encoding()
    finally:
        counting.encoding.cache_clear()


def test_a_long_text_is_estimated_within_a_few_percent_of_its_exact_count() -> None:
    text = SPEC.read_text() * 3 if SPEC.exists() else "The relay counts tokens offline. " * 5000
    assert len(text) > counting.EXACT_LIMIT
    exact = counting.count_text(text)
    assert abs(counting.estimate_text(text) - exact) / exact < 0.05


def test_the_margin_rounds_up() -> None:
    assert counting.with_margin(100, counting.OPENAI_MARGIN_PERCENT) == 110
    assert counting.with_margin(101, 10) == 112  # 111.1 -> 112
    assert counting.with_margin(1, counting.ANTHROPIC_MARGIN_PERCENT) == 2


def test_a_chat_prompt_counts_text_parts_tool_calls_and_media() -> None:
    text_only = {"messages": [{"role": "user", "content": "Hello there"}]}
    base = counting.chat_prompt_tokens(text_only)
    assert (
        base
        == counting.count_text("Hello there")
        + counting.TOKENS_PER_MESSAGE
        + counting.TOKENS_PER_REQUEST
    )
    with_parts = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hello there"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + "A" * 100_000},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
        ]
    }
    counted = counting.chat_prompt_tokens(with_parts)
    assert counted >= base + counting.MEDIA_TOKENS + counting.count_text('{"x": 1}')
    assert counted < base + counting.MEDIA_TOKENS + 40  # the base64 image was not read as text


def test_an_anthropic_prompt_counts_system_messages_tools_and_skips_signatures() -> None:
    body = {
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": "What is the weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Call the tool.", "signature": "Z" * 5000},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
        ],
    }
    counted = counting.messages_prompt_tokens(body)
    assert 40 < counted < 120


def test_a_gemini_prompt_counts_system_contents_and_tools_and_skips_signatures() -> None:
    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}]
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    body = {
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "What is the weather?"}]},
            {"role": "model", "parts": [{**call, "thoughtSignature": "Z" * 5000}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "Sunny"}}}
            ]},
        ],
        "tools": tools,
    }  # fmt: skip
    texts = ["You are terse.", "What is the weather?", 'get_weather{"city":"Paris"}',
             "get_weather", "Sunny"]  # fmt: skip
    expected = counting.count_text("\n".join(texts) + "\n" + orjson.dumps([tools]).decode())
    overhead = 3 * counting.TOKENS_PER_MESSAGE + counting.TOKENS_PER_REQUEST
    assert counting.gemini_prompt_tokens(body) == expected + overhead
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo" * 10_000}}
    with_image = {"contents": [{"role": "user", "parts": [{"text": "What is this?"}, image]}]}
    alone = {"contents": [{"role": "user", "parts": [{"text": "What is this?"}]}]}
    assert counting.gemini_prompt_tokens(with_image) == (
        counting.gemini_prompt_tokens(alone) + counting.MEDIA_TOKENS
    )


def test_a_responses_input_counts_a_string_or_items_and_skips_encrypted_reasoning() -> None:
    assert (
        counting.responses_prompt_tokens({"input": "Hello there"})
        == counting.count_text("Hello there") + 7
    )
    items = {
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA" * 10_000},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        ],
    }
    assert counting.responses_prompt_tokens(items) < 40


def test_embeddings_input_counts_strings_and_token_arrays() -> None:
    assert counting.embeddings_input_tokens({"input": "Hello there"}) == 2
    assert counting.embeddings_input_tokens({"input": [1, 2, 3]}) == 3
    assert counting.embeddings_input_tokens({"input": [[1, 2], [3]]}) == 3
    assert counting.embeddings_input_tokens({"input": ["Hello there", "Hello"]}) == 4


def test_local_usage_counts_output_with_reasoning_inside() -> None:
    usage = counting.local_usage(50, ["Let me think.", "Hi!"], ["Let me think."])
    assert usage.input == 50 and usage.source == "local"
    assert usage.output == counting.count_text("Let me think.Hi!") and usage.reasoning == 4


def test_a_prompt_nested_far_past_the_recursion_limit_is_counted() -> None:
    content: object = "deep"
    for _ in range(5_000):
        content = [content]

    assert counting.chat_prompt_tokens({"messages": [{"role": "user", "content": content}]}) > 0
