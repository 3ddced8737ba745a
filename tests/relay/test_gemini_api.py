"""The Gemini API natively (SPEC §11.1): the official google-genai SDK against a real
`quotaledger serve` whose `gemini` channel is the fake upstream at `/v1beta`, speaking
Google's wire format. The model `via-gemini` costs 1 USD in (0.1 USD a cache read) and
2 USD out per million tokens: half a quota per uncached input token, a twentieth per
cached one, one per output token.

The SDK calls `/v1/...` (its default version) unless told `v1beta` (Gemini CLI's); both
are served. Refusals reach the SDK as its own `APIError`s with Google's `status` names."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from relay_live import (
    ANSWER,
    FORMAT_MODELS,
    UPSTREAM_KEY,
    Customer,
    Relay,
    balance,
    consistent,
    customer,
    log_rows,
    relay_server,
    sdk_client,
    settled,
)

from quotaledger.relay.limits import Rates

genai = pytest.importorskip("google.genai", reason="google-genai is in the test extra")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types  # noqa: E402

MODEL = FORMAT_MODELS["gemini"]
ROOT = "/v1beta/models/" + MODEL  # where the channel is called
RATE_LIMIT = 12  # relayed requests per minute of the one key that tests its limit
TOOL = "get_weather"
ARGUMENTS = {"location": "Paris, France", "unit": "celsius"}
RESULT = "18 degrees and sunny"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    env = {"QUOTALEDGER_ACCESS_LOG": "1"}
    yield from relay_server(tmp_path_factory, formats=True, env=env)


def sdk(relay: Relay, key: str, version: str = "v1beta") -> Any:
    """google-genai with `key` (held, and closed, until the test ends)."""
    options = types.HttpOptions(base_url=relay.server.base_url, api_version=version)
    return sdk_client(genai.Client(api_key=key, http_options=options))


def cost(row: Any) -> int:
    """ceil((uncached x 1 + cached x 0.1 + output x 2) / 1e6 x 500,000), in integers."""
    uncached = row["prompt_tokens"] - row["cached_tokens"]
    tenths = 10 * uncached + row["cached_tokens"] + 20 * row["completion_tokens"]
    return -(-tenths * 500_000 // 10_000_000)


def charged_at_the_price(relay: Relay, who: Customer, start: int, rows: int = 1) -> list[Any]:
    found = settled(relay, who, rows)
    for row in found:
        assert (row["client_format"], row["channel_format"], row["status"]) == (
            "gemini", "gemini", 200,
        )  # fmt: skip
        assert row["quota"] == cost(row)
    assert start - balance(relay, who).quota == sum(r["quota"] for r in found)
    consistent(relay)
    return found


# ---------------------------------------------------------------- generateContent


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_generate_content_is_answered_and_charged_on_the_reported_usage(
    relay: Relay, version: str
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    relay.upstream.script(path=ROOT + ":generateContent", input_tokens=300, output_tokens=40)
    answer = sdk(relay, who.key, version).models.generate_content(model=MODEL, contents="Hi")
    assert answer.text == ANSWER
    assert answer.usage_metadata.prompt_token_count == 300
    [row] = charged_at_the_price(relay, who, start)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (300, 40)
    assert (row["usage_source"], row["is_stream"]) == ("upstream", False)
    [sent] = relay.upstream.requests_to(ROOT + ":generateContent")[-1:]
    assert sent.header("x-goog-api-key") == UPSTREAM_KEY
    assert who.key not in json.dumps(sent.headers) + sent.query
    assert set(sent.json()) == {"contents"}  # the model and stream stay in the URL


def test_a_stream_is_relayed_and_charged_on_its_last_chunks_usage(relay: Relay) -> None:
    """Cached input at the cache price; thoughts are output (and reasoning)."""
    who = customer(relay)
    start = balance(relay, who).quota
    relay.upstream.script(
        path=ROOT + ":streamGenerateContent", input_tokens=1000, cache_read=4000,
        reasoning_tokens=7,
    )  # fmt: skip
    chunks = list(
        sdk(relay, who.key).models.generate_content_stream(
            model=MODEL,
            contents="Hi",
            config=types.GenerateContentConfig(
                thinking_config=types.ThinkingConfig(include_thoughts=True)
            ),
        )
    )
    parts = [p for c in chunks for p in c.candidates[0].content.parts]
    assert "".join(p.text for p in parts if not p.thought) == ANSWER
    assert any(p.thought for p in parts) and len(chunks) > 3
    assert chunks[-1].usage_metadata.cached_content_token_count == 4000
    [row] = charged_at_the_price(relay, who, start)
    assert (row["prompt_tokens"], row["cached_tokens"]) == (5000, 4000)
    assert row["completion_tokens"] == 9 + 7  # the nine words and the thoughts
    assert row["is_stream"] and row["usage_source"] == "upstream"
    assert relay.upstream.requests_to(ROOT + ":streamGenerateContent")[-1].query == "alt=sse"


def test_a_stream_asked_without_alt_sse_is_one_json_array(relay: Relay) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    answer = httpx.post(
        relay.server.base_url + ROOT + ":streamGenerateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        headers={"x-goog-api-key": who.key},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    chunks = [types.GenerateContentResponse.model_validate(c) for c in answer.json()]
    assert "".join(c.text or "" for c in chunks) == ANSWER
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    charged_at_the_price(relay, who, start)
    # The channel was asked for events all the same.
    assert relay.upstream.requests_to(ROOT + ":streamGenerateContent")[-1].query == "alt=sse"


def test_a_stream_cut_mid_way_raises_in_the_sdk_and_is_charged_for_what_came(
    relay: Relay,
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    relay.upstream.script(path=ROOT + ":streamGenerateContent", reset_after=3)
    text = ""
    with pytest.raises(genai_errors.ServerError) as raised:
        for chunk in sdk(relay, who.key).models.generate_content_stream(model=MODEL, contents="Hi"):
            text += chunk.text or ""
    assert (raised.value.code, raised.value.status) == (502, "UNAVAILABLE")
    assert text == "Hello from the "  # three chunks, then our error event
    [row] = settled(relay, who, 1)
    # Counted here (`billing.believable`): the prompt estimated, the three words delivered.
    assert (row["end_reason"], row["usage_source"]) == ("upstream_failed", "local")
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 4  # "Hello from the "
    assert row["quota"] == cost(row)
    assert start - balance(relay, who).quota == row["quota"]
    consistent(relay)


def test_a_tool_round_trip_keeps_the_thought_signature(relay: Relay) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    relay.upstream.script(
        path=ROOT + ":streamGenerateContent", tool_call=True, tool_name=TOOL,
        tool_arguments=json.dumps(ARGUMENTS),
    )  # fmt: skip
    client = sdk(relay, who.key)
    declaration = types.FunctionDeclaration(
        name=TOOL, parameters_json_schema={"type": "object", "properties": {}}
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    [*_, last] = client.models.generate_content_stream(
        model=MODEL, contents=[question], config=config
    )
    [call_part] = last.candidates[0].content.parts
    assert call_part.function_call.name == TOOL and call_part.function_call.args == ARGUMENTS
    assert call_part.thought_signature  # bytes, as the model signed them
    result = types.Part.from_function_response(name=TOOL, response={"result": RESULT})
    history = [question, last.candidates[0].content, types.Content(role="user", parts=[result])]
    answer = client.models.generate_content(model=MODEL, contents=history, config=config)
    assert answer.text == ANSWER
    sent = relay.upstream.requests_to(ROOT + ":generateContent")[-1].json()
    assert sent["contents"][1]["parts"][0]["thoughtSignature"]
    assert sent["contents"][2]["parts"][0]["functionResponse"]["response"] == {"result": RESULT}
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == TOOL
    charged_at_the_price(relay, who, start, rows=2)


def test_a_lowered_cap_goes_in_generation_config(relay: Relay) -> None:
    """A balance that cannot cover the model's maximum output: the cap sent is lowered to
    what it covers (SPEC §8b), in `generationConfig.maxOutputTokens`, the budget with it."""
    who = customer(relay, quota=4000)  # covers ~3,900 output tokens, not 32,768
    client = sdk(relay, who.key)
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=20_000)
    )
    client.models.generate_content(model=MODEL, contents="Hi", config=config)
    sent = relay.upstream.requests_to(ROOT + ":generateContent")[-1].json()["generationConfig"]
    cap = sent["maxOutputTokens"]
    assert 1024 <= cap < 4000
    # In the spelling the client used (google-genai writes its config objects' fields so).
    assert sent["thinkingConfig"]["thinking_budget"] == max(1024, cap // 2)
    assert balance(relay, who).quota >= 0
    consistent(relay)


# ---------------------------------------------------------------- countTokens, models


def test_count_tokens_is_the_channels_count_and_never_billed(relay: Relay) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    relay.upstream.script(path=ROOT + ":countTokens", input_tokens=1234)
    counted = sdk(relay, who.key, "v1").models.count_tokens(model=MODEL, contents="Hi there")
    assert counted.total_tokens == 1234
    assert balance(relay, who).quota == start and log_rows(relay, who) == []


def test_count_tokens_is_counted_here_where_no_gemini_channel_serves_the_model(
    relay: Relay,
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests)
    counted = sdk(relay, who.key).models.count_tokens(
        model=FORMAT_MODELS["openai"], contents="The quick brown fox jumps over the lazy dog."
    )
    assert 10 <= counted.total_tokens <= 20  # ten words, and the turn's few tokens
    assert relay.upstream.requests[seen:] == []
    assert balance(relay, who).quota == start and log_rows(relay, who) == []


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_the_models_are_listed_and_described_as_google_does(relay: Relay, version: str) -> None:
    who = customer(relay)
    client = sdk(relay, who.key, version)
    listed = {m.name: m for m in client.models.list()}
    assert {f"models/{m}" for m in FORMAT_MODELS.values()} <= set(listed)
    one = client.models.get(model=MODEL)
    assert one.name == f"models/{MODEL}" and one.display_name == MODEL
    assert one.supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    assert one.output_token_limit == 32_768  # no published figure: the relay's default
    assert listed[one.name].output_token_limit == one.output_token_limit
    with pytest.raises(genai_errors.ClientError) as raised:
        client.models.get(model="no-such-model")
    assert (raised.value.code, raised.value.status) == (404, "NOT_FOUND")


def test_a_model_list_is_paged_when_asked(relay: Relay) -> None:
    who = customer(relay)
    pager = sdk(relay, who.key).models.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert len(list(pager)) >= len(FORMAT_MODELS)  # the pager follows nextPageToken


@pytest.mark.parametrize("size", ["¹", "²0", "x"])
def test_a_page_size_that_is_no_number_is_ignored_not_a_500(relay: Relay, size: str) -> None:
    """'¹'.isdigit() is True but int('¹') raises (found by the OpenAPI contract test)."""
    who = customer(relay)
    answer = httpx.get(
        relay.server.base_url + "/v1beta/models",
        params={"pageSize": size, "pageToken": size},
        headers={"x-goog-api-key": who.key},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["models"]


# ---------------------------------------------------------------- embeddings


def test_embed_content_goes_to_the_gemini_channel_and_is_charged_for_its_input(
    relay: Relay,
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    contents = [types.Content(parts=[types.Part(text=t)]) for t in ("one text", "another")]
    done = sdk(relay, who.key, "v1").models.embed_content(
        model=MODEL, contents=contents, config=types.EmbedContentConfig(output_dimensionality=4)
    )
    assert [len(e.values or []) for e in done.embeddings or []] == [4, 4]
    sent = relay.upstream.requests_to(ROOT + ":batchEmbedContents")[-1].json()
    assert [r["model"] for r in sent["requests"]] == [f"models/{MODEL}"] * 2
    [row] = settled(relay, who, 1)
    assert row["client_format"] == "gemini_embeds" and row["completion_tokens"] == 0
    assert row["usage_source"] == "local" and row["quota"] == cost(row) > 0
    assert start - balance(relay, who).quota == row["quota"]
    consistent(relay)


def test_embed_content_is_served_by_gemini_channels_only(relay: Relay) -> None:
    who = customer(relay)
    answer = httpx.post(
        f"{relay.server.base_url}/v1beta/models/{FORMAT_MODELS['openai']}:embedContent",
        json={"content": {"parts": [{"text": "one text"}]}},
        headers={"x-goog-api-key": who.key},
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["status"] == "NOT_FOUND"


# ---------------------------------------------------------------- keys and refusals


def test_the_key_may_come_as_a_query_parameter_and_is_never_logged(relay: Relay) -> None:
    who = customer(relay)
    answer = httpx.post(
        f"{relay.server.base_url}{ROOT}:generateContent?key={who.key}",
        json={"contents": [{"parts": [{"text": "Hi"}]}]},
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["candidates"]
    sent = relay.upstream.requests_to(ROOT + ":generateContent")[-1]
    assert who.key not in sent.query + json.dumps(sent.headers)
    time.sleep(0.5)  # the engine writes its access line after the answer
    log = relay.server.log()
    assert f"{ROOT}:generateContent" in log and who.key not in log


def test_a_bearer_key_is_accepted_too(relay: Relay) -> None:
    who = customer(relay)
    answer = httpx.post(
        f"{relay.server.base_url}/v1/models/{MODEL}:generateContent",
        json={"contents": [{"parts": [{"text": "Hi"}]}]},
        headers={"Authorization": f"Bearer {who.key}"},
        timeout=30,
    )
    assert answer.status_code == 200


def _refused(call: Any) -> genai_errors.APIError:
    with pytest.raises(genai_errors.APIError) as raised:
        call()
    return raised.value


def test_an_unknown_key_is_unauthenticated(relay: Relay) -> None:
    client = sdk(relay, "sk-ql-not-a-key")
    error = _refused(lambda: client.models.generate_content(model=MODEL, contents="Hi"))
    assert isinstance(error, genai_errors.ClientError)
    assert (error.code, error.status) == (401, "UNAUTHENTICATED")


def test_a_model_the_key_may_not_use_is_permission_denied(relay: Relay) -> None:
    who = customer(relay, models=(FORMAT_MODELS["openai"],))
    client = sdk(relay, who.key, "v1")
    error = _refused(lambda: client.models.generate_content(model=MODEL, contents="Hi"))
    assert (error.code, error.status) == (403, "PERMISSION_DENIED")


def test_out_of_money_is_a_402_with_the_relays_message(relay: Relay) -> None:
    who = customer(relay, quota=100)
    error = _refused(
        lambda: sdk(relay, who.key).models.generate_content(model=MODEL, contents="Hi")
    )
    assert isinstance(error, genai_errors.ClientError)
    assert (error.code, error.status) == (402, "FAILED_PRECONDITION")
    assert error.message and error.message.startswith("Insufficient quota")
    assert balance(relay, who).quota == 100 and log_rows(relay, who) == []


def test_over_the_rate_limit_is_resource_exhausted(relay: Relay) -> None:
    who = customer(relay, rates=Rates(rpm=RATE_LIMIT))
    client = sdk(relay, who.key)
    for _ in range(RATE_LIMIT):
        client.models.generate_content(model=MODEL, contents="Hi")
    error = _refused(lambda: client.models.generate_content(model=MODEL, contents="Hi"))
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert len(settled(relay, who, RATE_LIMIT)) == RATE_LIMIT


def test_an_upstream_refusal_reaches_the_sdk_in_googles_shape(relay: Relay) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    relay.upstream.script(path=ROOT + ":generateContent", status=400)
    error = _refused(
        lambda: sdk(relay, who.key).models.generate_content(model=MODEL, contents="Hi")
    )
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert error.message == "Request contains an invalid argument."  # the channel's own
    assert balance(relay, who).quota == start


def test_a_body_without_contents_is_invalid_argument_naming_it(relay: Relay) -> None:
    who = customer(relay)
    answer = httpx.post(
        f"{relay.server.base_url}{ROOT}:generateContent",
        json={"generationConfig": {}},
        headers={"x-goog-api-key": who.key},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "contents" in error["message"]


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_an_unknown_method_is_refused_in_googles_shape(relay: Relay, version: str) -> None:
    """`models/{model}` is a GET route: a POST of another method is 405 (UNIMPLEMENTED)."""
    who = customer(relay)
    refused = httpx.post(
        f"{relay.server.base_url}/{version}/models/{MODEL}:predict",
        json={},
        headers={"x-goog-api-key": who.key},
    )
    assert refused.status_code == 405
    assert refused.json()["error"] == {
        "code": 405, "message": "method not allowed", "status": "UNIMPLEMENTED",
    }  # fmt: skip


def test_an_anthropic_count_on_a_gemini_channel_is_geminis_count(relay: Relay) -> None:
    """SPEC §11: count_tokens on a gemini channel asks its countTokens, the request
    converted; never billed."""
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to(ROOT + ":countTokens"))
    relay.upstream.script(path=ROOT + ":countTokens", input_tokens=4321)
    client = sdk_client(anthropic.Anthropic(api_key=who.key, base_url=relay.server.base_url))
    counted = client.messages.count_tokens(
        model=MODEL, system="Be brief.", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert counted.input_tokens == 4321
    [sent] = [r.json() for r in relay.upstream.requests_to(ROOT + ":countTokens")[seen:]]
    request = sent["generateContentRequest"]
    assert request["model"] == f"models/{MODEL}"
    assert request["contents"][0]["parts"][0]["text"] == "Hello there"
    assert balance(relay, who).quota == start and log_rows(relay, who) == []
