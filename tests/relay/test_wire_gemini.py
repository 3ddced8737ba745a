"""Gemini's API on the wire (SPEC §11.1): the body sent upstream, caps in
`generationConfig`, usage from `usageMetadata`, streams for SSE and JSON-array clients,
countTokens, embeddings and model pages. Shapes are validated with google-genai's types."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from wire_samples import GEMINI_ANSWER, GEMINI_STREAM
from wire_support import relay_stream

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import counting, gemini, gemini_embeddings, gemini_models
from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.formats import GEMINI, GEMINI_BATCH_EMBED

types = pytest.importorskip("google.genai.types", reason="google-genai is in the test extra")
from google.genai.models import _Model_from_mldev  # noqa: E402

CONTENTS = [{"role": "user", "parts": [{"text": "Tell me a joke."}]}]
# What the pipeline hands the format: the URL's model and streaming in the body.
REQUEST = {"contents": CONTENTS, "model": "gemini-2.5-flash", "stream": True}


def _chunks(stream: bytes) -> list[Any]:
    return [orjson.loads(line[6:]) for line in stream.split(b"\r\n\r\n") if line]


# ---------------------------------------------------------------- requests and caps


def test_the_urls_model_and_stream_do_not_go_upstream_in_the_body() -> None:
    body = {**REQUEST, "generationConfig": {"temperature": 0.2, "maxOutputTokens": 800}}
    prepared = gemini.prepare_gemini(body)
    assert prepared.body == {"contents": CONTENTS, "generationConfig": body["generationConfig"]}
    assert prepared.stream and prepared.output_cap == 800 and prepared.candidates == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"contents": []}, "contents"),
        ({"contents": ["Hi"]}, "contents"),
        ({"contents": CONTENTS, "generationConfig": []}, "generationConfig"),
        ({"contents": CONTENTS, "generationConfig": {"maxOutputTokens": 0}},
         "generationConfig.maxOutputTokens"),
        ({"contents": CONTENTS, "generationConfig": {"candidate_count": "2"}},
         "generationConfig.candidateCount"),
    ],
)  # fmt: skip
def test_a_request_that_cannot_be_forwarded_names_its_field(body: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        gemini.prepare_gemini(body)
    assert raised.value.param == param


def test_a_lowered_cap_goes_in_the_field_the_client_spelled() -> None:
    camel = {"contents": CONTENTS}
    assert gemini.with_output_cap(camel, 2000)["generationConfig"] == {"maxOutputTokens": 2000}
    snake = {"contents": CONTENTS, "generation_config": {"max_output_tokens": 60_000}}
    capped = gemini.with_output_cap(snake, 2000)
    assert capped["generation_config"] == {"max_output_tokens": 2000}
    assert "generationConfig" not in capped  # both spellings at once: Google refuses
    assert snake["generation_config"]["max_output_tokens"] == 60_000  # the client's untouched


def test_the_thinking_budget_is_lowered_with_the_cap_and_kept_valid() -> None:
    body = {
        "contents": CONTENTS,
        "generationConfig": {
            "thinkingConfig": {"thinking_budget": 24_576, "includeThoughts": True}
        },
    }
    assert gemini.thinking_budget(body) == 24_576
    lowered = gemini.with_output_cap(body, 3000, thinking_budget=1500)["generationConfig"]
    assert lowered == {
        "thinkingConfig": {"thinking_budget": 1500, "includeThoughts": True},
        "maxOutputTokens": 3000,
    }
    # "Off" is a budget 2.5 Pro takes too (it refuses 0): under half the cap, at least 128.
    off = gemini.with_output_cap(body, 1024, thinking_off=True)["generationConfig"]
    assert off["thinkingConfig"]["thinking_budget"] == 512
    dynamic = {"contents": CONTENTS, "generationConfig": {"thinkingConfig": {"thinkingBudget": -1}}}
    kept = gemini.with_output_cap(dynamic, 1024, thinking_off=True)["generationConfig"]
    assert kept["thinkingConfig"] == {"thinkingBudget": -1}


def test_candidate_count_multiplies_the_reservation() -> None:
    body = {"contents": CONTENTS, "generationConfig": {"candidateCount": 3, "maxOutputTokens": 100}}
    assert GEMINI.choices(body) == 3 and GEMINI.client_cap(body) == 100
    assert gemini.prepare_gemini(body).reserved_output_tokens == 300


# ---------------------------------------------------------------- usage


def test_the_prompt_count_includes_cached_content_and_thoughts_are_output() -> None:
    usage = gemini.parse_usage(_chunks(GEMINI_STREAM)[-1]["usageMetadata"])
    assert usage == TokenUsage(input=100, cache_read=2000, output=14 + 37, reasoning=37)
    assert usage.prompt_tokens == 2100


def test_tool_use_prompt_tokens_are_input_too() -> None:
    metadata = {"promptTokenCount": 50, "toolUsePromptTokenCount": 300, "candidatesTokenCount": 9}
    assert gemini.parse_usage(metadata) == TokenUsage(input=350, output=9)


@pytest.mark.parametrize(
    "metadata",
    [
        {"candidatesTokenCount": 9},  # no prompt count
        {"promptTokenCount": -1, "candidatesTokenCount": 9},
        {"promptTokenCount": 10, "cachedContentTokenCount": 11, "candidatesTokenCount": 9},
        {"promptTokenCount": 10, "thoughtsTokenCount": True},
    ],
)
def test_a_report_that_cannot_be_true_is_no_report(metadata: dict[str, Any]) -> None:
    assert gemini.parse_usage(metadata) is None


def test_a_whole_answer_is_charged_on_its_report_else_counted_here() -> None:
    types.GenerateContentResponse.model_validate(GEMINI_ANSWER)
    assert gemini.generate_usage(GEMINI_ANSWER, prompt_tokens=5) == TokenUsage(
        input=71, output=81, reasoning=66
    )
    unreported = {k: v for k, v in GEMINI_ANSWER.items() if k != "usageMetadata"}
    thought = "The user wants the weather."
    call = 'get_weather{"location":"Paris"}'
    assert gemini.generate_usage(unreported, prompt_tokens=5) == counting.local_usage(
        5, [thought, call], [thought]
    )


# ---------------------------------------------------------------- streams


def test_an_sse_stream_passes_through_and_settles_on_the_last_chunks_counts() -> None:
    tracker = gemini.GeminiStream(prompt_tokens=9)
    assert relay_stream(tracker, GEMINI_STREAM) == GEMINI_STREAM  # nothing added
    assert tracker.done and tracker.delivered
    assert tracker.usage() == TokenUsage(input=100, cache_read=2000, output=51, reasoning=37)
    for chunk in _chunks(GEMINI_STREAM):
        types.GenerateContentResponse.model_validate(chunk)


def test_a_json_array_client_gets_the_same_chunks_as_one_array() -> None:
    tracker = gemini.GeminiStream(prompt_tokens=9, sse=False)
    keepalive = b": keep-alive\r\n\r\n"
    trailing = b'data: {"candidates": [{"content": {"parts": [{"text": "late"}]}}]}\r\n\r\n'
    sent = relay_stream(tracker, keepalive + GEMINI_STREAM + trailing)
    assert orjson.loads(sent) == _chunks(GEMINI_STREAM)  # closed at the finish, nothing after
    assert tracker.usage().output == 51


def test_a_cut_stream_ends_with_googles_error_and_settles_on_what_was_delivered() -> None:
    head = GEMINI_STREAM[: GEMINI_STREAM.index(b"data: ", 10)]  # the first chunk only
    for sse in (True, False):
        tracker = gemini.GeminiStream(prompt_tokens=9, sse=sse)
        sent = relay_stream(tracker, head)
        last = _chunks(sent)[-1] if sse else orjson.loads(sent)[-1]
        assert last == {
            "error": {
                "code": 502,
                "message": "The upstream stream ended before the answer was complete.",
                "status": "UNAVAILABLE",
            }
        }
        usage = tracker.usage()  # the prompt as reported, the output as delivered
        assert (usage.input, usage.output) == (2100, counting.count_text("Why did the"))
        assert usage.source is UsageSource.LOCAL


def test_an_upstream_error_chunk_is_relayed_and_closes_a_json_array() -> None:
    head = GEMINI_STREAM[: GEMINI_STREAM.index(b"data: ", 10)]
    error = b'data: {"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}\r\n\r\n'
    sse = gemini.GeminiStream(prompt_tokens=9)
    assert relay_stream(sse, head + error) == head + error
    array = gemini.GeminiStream(prompt_tokens=9, sse=False)
    sent = orjson.loads(relay_stream(array, head + error))
    assert sent[-1]["error"]["status"] == "INTERNAL" and len(sent) == 2
    assert array.upstream_error == {"code": 500, "message": "Internal", "status": "INTERNAL"}


def test_a_json_array_with_two_candidates_closes_when_both_finished() -> None:
    def chunk(index: int, finish: bool) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": "x"}]}, "index": index}
        if finish:
            candidate["finishReason"] = "STOP"
        return b"data: " + orjson.dumps({"candidates": [candidate]}) + b"\r\n\r\n"

    tracker = gemini.GeminiStream(prompt_tokens=1, sse=False, candidates=2)
    sent = relay_stream(tracker, chunk(0, True) + chunk(1, False) + chunk(1, True))
    assert len(orjson.loads(sent)) == 3 and tracker.done


def test_an_empty_stream_is_an_empty_array_once_it_is_known_complete() -> None:
    blocked = b'data: {"promptFeedback": {"blockReason": "SAFETY"}}\r\n\r\n'
    tracker = gemini.GeminiStream(prompt_tokens=4, sse=False)
    sent = orjson.loads(relay_stream(tracker, blocked))
    assert sent == [{"promptFeedback": {"blockReason": "SAFETY"}}] and not tracker.delivered


# ---------------------------------------------------------------- countTokens, embeddings


def test_count_tokens_is_answered_here_over_the_request_it_names() -> None:
    inner = {"model": "models/gemini-2.5-flash", "contents": CONTENTS, "systemInstruction":
             {"parts": [{"text": "Be brief."}]}}  # fmt: skip
    answer = orjson.loads(gemini.count_tokens_answer({"generateContentRequest": inner}))
    assert answer == {"totalTokens": counting.gemini_prompt_tokens(inner)}
    types.CountTokensResponse.model_validate(answer)
    with pytest.raises(InvalidRequest):
        gemini.count_tokens_answer({"generateContentRequest": {"model": "m"}})


def test_count_tokens_names_the_channels_model() -> None:
    body = {"generateContentRequest": {"model": "models/alias", "contents": CONTENTS}}
    sent = gemini.count_for_model({**body, "model": "alias", "stream": False}, "gemini-2.5-pro")
    assert sent == {
        "generateContentRequest": {"model": "models/gemini-2.5-pro", "contents": CONTENTS}
    }


def test_a_batch_of_embeddings_runs_on_the_channels_model() -> None:
    body = {"requests": [{"model": "models/alias", "content": {"parts": [{"text": "a"}]}}] * 2}
    gemini_embeddings.prepare_batch_embed(body)
    sent = GEMINI_BATCH_EMBED.addressed(body, "gemini-embedding-001")
    assert [r["model"] for r in sent["requests"]] == ["models/gemini-embedding-001"] * 2
    with pytest.raises(InvalidRequest) as raised:
        gemini_embeddings.prepare_batch_embed({"requests": [{"content": {"text": "a"}}]})
    assert raised.value.param == "requests[0].content"


def test_an_embedding_without_usage_is_charged_for_its_input_counted_here() -> None:
    body = {"content": {"parts": [{"text": "What is the meaning of life?"}]}}
    tokens = gemini_embeddings.embed_tokens(body)
    assert tokens == counting.count_text("What is the meaning of life?")
    answer = {"embedding": {"values": [0.1, 0.2]}}
    assert gemini_embeddings.embed_usage(answer, input_tokens=tokens) == counting.local_usage(
        tokens, ()
    )
    reported = {**answer, "usageMetadata": {"promptTokenCount": 8}}
    assert gemini_embeddings.embed_usage(reported, input_tokens=tokens) == TokenUsage(input=8)


# ---------------------------------------------------------------- models


def test_model_entries_read_as_google_sdk_models() -> None:
    entry = gemini_models.model_entry("gemini-2.5-pro", output_limit=65_536, input_limit=1_048_576)
    model = _as_the_sdk_reads_it(entry)
    assert (model.name, model.input_token_limit, model.output_token_limit) == (
        "models/gemini-2.5-pro", 1_048_576, 65_536,
    )  # fmt: skip
    embedding = gemini_models.model_entry("text-embedding-004", output_limit=1, input_limit=None,
                                   embedding=True)  # fmt: skip
    assert "inputTokenLimit" not in embedding
    assert _as_the_sdk_reads_it(embedding).supported_actions == [
        "embedContent", "batchEmbedContents", "countTokens",
    ]  # fmt: skip


def _as_the_sdk_reads_it(entry: dict[str, Any]) -> Any:
    """A model entry read as google-genai's `models.get` reads Google's (models.py)."""
    return types.Model._from_response(response=_Model_from_mldev(entry), kwargs={})


def test_a_model_page_carries_the_token_of_the_next() -> None:
    entries = [
        gemini_models.model_entry(f"m{i}", output_limit=1, input_limit=None) for i in range(5)
    ]
    pages, token = [], None
    while True:
        page = orjson.loads(gemini_models.model_page(entries, 2, token))
        pages.append([m["name"].removeprefix("models/") for m in page["models"]])
        token = page.get("nextPageToken")
        if token is None:
            break
    assert pages == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert len(orjson.loads(gemini_models.model_page(entries, None, None))["models"]) == 5
