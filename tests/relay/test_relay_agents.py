"""Claude Code's and Codex CLI's endpoints through the relay (SPEC §8a): the official
`anthropic` SDK on `/v1/messages` and `/v1/messages/count_tokens`, and the official
`openai` SDK's Responses API, against a real `quotaledger serve` in front of the fake
upstream. claude-test costs 3 USD in and 15 USD out per million tokens with Anthropic's
cache ratios, so a request costs `ceil(1.5 in + 0.15 cache_read + 1.875 write_5m +
3 write_1h + 7.5 out)` quota; gpt-test `ceil(uncached + 0.1 cached + 4 out)`."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from relay_live import (
    ANSWER,
    CLAUDE,
    MODEL,
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

QUESTION: Any = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    yield from relay_server(tmp_path_factory)


def claude(relay: Relay, who: Customer, max_retries: int = 0) -> anthropic.Anthropic:
    """The official SDK as Claude Code configures it: ANTHROPIC_BASE_URL is the relay."""
    client = anthropic.Anthropic(
        api_key=who.key, base_url=relay.server.base_url, max_retries=max_retries
    )
    return sdk_client(client)


def codex(relay: Relay, who: Customer) -> openai.OpenAI:
    client = openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=0)
    return sdk_client(client)


def claude_cost(inp: int, read: int = 0, w5: int = 0, w1: int = 0, out: int = 0) -> int:
    # In tenths of a thousandth of a quota, to stay in integers: 1.5 = 15,000 / 10,000.
    tenths = 15_000 * inp + 1_500 * read + 18_750 * w5 + 30_000 * w1 + 75_000 * out
    return -(-tenths // 10_000)


# ---------------------------------------------------------------- Anthropic Messages


def test_a_message_is_charged_for_every_token_class(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(
        path="/v1/messages", input_tokens=100, cache_read=1000, cache_write_5m=200,
        cache_write_1h=40, output_tokens=20,
    )  # fmt: skip
    message = claude(relay, who).messages.create(model=CLAUDE, max_tokens=256, messages=QUESTION)
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    [row] = settled(relay, who, 1)
    assert row["quota"] == claude_cost(100, 1000, 200, 40, 20) == 945
    assert (row["cached_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (
        1000, 200, 40,
    )  # fmt: skip
    assert row["prompt_tokens"] == 1340 and row["completion_tokens"] == 20
    consistent(relay)


def test_a_streamed_message_whose_start_says_zero_input_is_charged_from_its_delta(
    relay: Relay,
) -> None:
    who = customer(relay)
    relay.upstream.script(
        path="/v1/messages", zero_input_in_start=True, input_tokens=300, output_tokens=9
    )
    with claude(relay, who).messages.stream(
        model=CLAUDE, max_tokens=256, messages=QUESTION
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == ANSWER
    [row] = settled(relay, who, 1)
    assert row["prompt_tokens"] == 300
    assert row["quota"] == claude_cost(300, out=9)
    assert row["usage_source"] == "upstream"
    consistent(relay)


def test_count_tokens_is_never_billed_and_writes_no_log_row(relay: Relay) -> None:
    who = customer(relay)
    before = balance(relay, who)
    counted = claude(relay, who).messages.count_tokens(model=CLAUDE, messages=QUESTION)
    assert counted.input_tokens > 0
    assert balance(relay, who) == before
    assert log_rows(relay, who) == []
    assert relay.upstream.requests_to("/v1/messages/count_tokens")  # an anthropic channel answered


def test_anthropic_headers_and_the_query_arrive_upstream_but_never_the_clients_key(
    relay: Relay,
) -> None:
    who = customer(relay)
    answer = httpx.post(
        relay.server.base_url + "/v1/messages?beta=true",
        json={"model": CLAUDE, "max_tokens": 64, "messages": QUESTION},
        headers={
            "x-api-key": who.key,
            "Authorization": "Bearer sk-ql-not-this-one",  # x-api-key wins
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14",
            "X-Claude-Code-Session-Id": "session-42",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    sent = relay.upstream.requests_to("/v1/messages")[-1]
    assert sent.query == "beta=true"
    assert sent.header("anthropic-version") == "2023-06-01"
    assert sent.header("anthropic-beta") == (
        "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
    )
    assert sent.header("x-api-key") == UPSTREAM_KEY
    assert who.key not in str(sent.headers) and "sk-ql-" not in str(sent.headers)
    [row] = settled(relay, who, 1)
    assert row["session_id"] == "session-42"


def test_an_upstream_529_reaches_the_sdk_with_its_own_status_and_body(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(path="/v1/messages", status=529)  # one anthropic channel: one try
    with pytest.raises(anthropic.APIStatusError) as failed:
        claude(relay, who).messages.create(model=CLAUDE, max_tokens=64, messages=QUESTION)
    assert failed.value.status_code == 529
    body: Any = failed.value.body  # Anthropic's own error, unmodified (its request_id too)
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert body["request_id"] != failed.value.response.headers["x-request-id"]
    assert balance(relay, who).used_quota == 0
    consistent(relay)


def test_an_upstream_400_passes_through_unmodified(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(path="/v1/messages", status=400)
    with pytest.raises(anthropic.BadRequestError) as failed:
        claude(relay, who).messages.create(model=CLAUDE, max_tokens=64, messages=QUESTION)
    assert failed.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert balance(relay, who).used_quota == 0


def test_our_refusals_raise_the_anthropic_sdks_matching_exceptions(relay: Relay) -> None:
    limited = customer(relay, models=(MODEL,))
    with pytest.raises(anthropic.AuthenticationError):
        claude(relay, Customer(0, 0, "sk-ql-wrong")).messages.create(
            model=CLAUDE, max_tokens=8, messages=QUESTION
        )
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(relay, limited).messages.create(model=CLAUDE, max_tokens=8, messages=QUESTION)
    with pytest.raises(anthropic.NotFoundError):
        claude(relay, customer(relay)).messages.create(
            model="claude-none", max_tokens=8, messages=QUESTION
        )
    poor = customer(relay, quota=10)
    seen = len(relay.upstream.requests)
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude(relay, poor, max_retries=3).messages.create(
            model=CLAUDE, max_tokens=1000, messages=QUESTION
        )
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert len(relay.upstream.requests) == seen  # nothing went upstream, nothing retried


def test_models_in_anthropics_shape_when_asked_with_anthropic_version(relay: Relay) -> None:
    who = customer(relay, models=(CLAUDE,))
    listed = claude(relay, who).models.list()
    assert [m.id for m in listed.data] == [CLAUDE]
    assert listed.data[0].type == "model"
    found = claude(relay, who).models.retrieve(CLAUDE)
    assert (found.id, found.type) == (CLAUDE, "model")


def test_thirty_concurrent_streams_on_a_balance_for_ten_never_go_below_zero(
    relay: Relay,
) -> None:
    probe = customer(relay)
    claude(relay, probe).messages.create(model=CLAUDE, max_tokens=100, messages=QUESTION)
    [first] = settled(relay, probe, 1)
    who = customer(relay, quota=10 * first["quota_reserved"])
    # Each costs less than its reservation (1 input token): at least ten are covered.
    relay.upstream.script(path="/v1/messages", output_tokens=100, input_tokens=1, times=30)

    def one(_: int) -> int:
        try:
            with claude(relay, who).messages.stream(
                model=CLAUDE, max_tokens=100, messages=QUESTION
            ) as stream:
                stream.until_done()
            return 200
        except anthropic.APIStatusError as exc:
            return exc.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(one, range(30)))
    relay.upstream.reset()
    assert set(statuses) <= {200, 402} and statuses.count(200) >= 10
    rows = settled(relay, who, statuses.count(200))
    assert all(row["quota"] > 0 for row in rows)  # content was relayed: never settled at 0
    assert balance(relay, who).quota >= 0
    consistent(relay)


# ---------------------------------------------------------------- OpenAI Responses


def test_a_response_is_charged_with_cached_input_at_its_own_price(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(path="/v1/responses", input_tokens=200, cache_read=800, output_tokens=9)
    response = codex(relay, who).responses.create(model=MODEL, input="Say hello.")
    assert response.output_text == ANSWER
    [row] = settled(relay, who, 1)
    assert row["prompt_tokens"] == 1000 and row["cached_tokens"] == 800
    assert row["quota"] == 200 + 80 + 4 * 9
    consistent(relay)


def test_a_streamed_response_is_charged_from_its_terminal_event(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(path="/v1/responses", input_tokens=70, output_tokens=9)
    events = list(codex(relay, who).responses.create(model=MODEL, input="Hi", stream=True))
    assert events[-1].type == "response.completed"
    [row] = settled(relay, who, 1)
    assert row["quota"] == 70 + 4 * 9 and row["usage_source"] == "upstream"


def test_a_response_stream_without_a_terminal_event_is_ended_by_ours_and_settled(
    relay: Relay,
) -> None:
    who = customer(relay)
    relay.upstream.script(path="/v1/responses", no_terminal=True, usage="none")
    events = list(codex(relay, who).responses.create(model=MODEL, input="Hi", stream=True))
    assert events[-1].type == "response.failed"
    [row] = settled(relay, who, 1)
    assert row["quota"] > 0 and row["usage_source"] == "local"
    assert row["end_reason"] == "upstream_ended_early"
    consistent(relay)
