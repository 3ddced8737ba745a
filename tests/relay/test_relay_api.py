"""The relay end to end (SPEC §8): the official `openai` SDK against a real `quotaledger
serve` process, in front of the example fake upstream (which speaks OpenAI's real wire
format and lets each test script its faults). Charges are checked against the formula:
the model costs 2 USD in and 8 USD out per million tokens, so a request costs exactly
`input + 4 x output` quota."""

from __future__ import annotations

import concurrent.futures
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from relay_live import (
    ANSWER,
    CLAUDE,
    MESSAGES,
    MODEL,
    UPSTREAM_KEY,
    Customer,
    Relay,
    balance,
    chat_stream,
    consistent,
    customer,
    log_rows,
    relay_server,
    sdk_client,
    settled,
)

from quotaledger.identity import keys


def sdk(relay: Relay, who: Customer, max_retries: int = 0) -> openai.OpenAI:
    """The official SDK with `who`'s key (closed after the test)."""
    client = openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=max_retries)
    return sdk_client(client)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    yield from relay_server(tmp_path_factory)


# ---------------------------------------------------------------- answers and charges


def test_a_chat_completion_is_relayed_and_charged_by_upstream_usage(relay: Relay) -> None:
    who = customer(relay)
    before = balance(relay, who)
    relay.upstream.script(input_tokens=100, output_tokens=20, path="/v1/chat/completions")
    completion = sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == ANSWER
    assert completion.usage is not None and completion.usage.prompt_tokens == 100
    [row] = settled(relay, who, 1)
    after = balance(relay, who)
    assert row["quota"] == 100 + 4 * 20
    assert before.quota - after.quota == 180
    assert after.used_quota == 180 and after.request_count == 1
    assert row["usage_source"] == "upstream" and row["key_name"] == "laptop"
    assert row["channel"] == "primary" and row["status"] == 200
    assert keys.get_key(relay.database, who.key_id).used_quota == 180
    consistent(relay)


def test_every_answer_carries_a_request_id(relay: Relay) -> None:
    who = customer(relay)
    answered = httpx.post(
        relay.v1 + "/chat/completions",
        json={"model": MODEL, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {who.key}"},
        timeout=30,
    )
    refused = httpx.get(relay.v1 + "/models", headers={"Authorization": "Bearer sk-ql-nope"})
    assert answered.status_code == 200 and refused.status_code == 401
    assert answered.headers["x-request-id"].startswith("req_")
    assert refused.headers["x-request-id"] != answered.headers["x-request-id"]
    [row] = settled(relay, who, 1)
    assert row["request_id"] == answered.headers["x-request-id"]


def test_a_stream_is_relayed_event_by_event_without_usage_unless_asked(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(input_tokens=50, output_tokens=9, path="/v1/chat/completions")
    chunks = list(
        sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert all(c.usage is None for c in chunks)  # upstream's usage chunk was dropped
    [row] = settled(relay, who, 1)
    assert row["quota"] == 50 + 4 * 9 and row["is_stream"]
    sent = relay.upstream.requests_to("/v1/chat/completions")[-1].json()
    assert sent["stream_options"] == {"include_usage": True}  # forced upstream
    consistent(relay)


def test_a_usage_chunk_is_synthesized_when_asked_and_upstream_sent_none(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(usage="none", path="/v1/chat/completions")
    chunks = list(
        sdk(relay, who).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0].choices == []
    counted = with_usage[0].usage
    assert counted is not None and counted.completion_tokens > 0
    [row] = settled(relay, who, 1)
    assert row["usage_source"] == "local"
    assert row["quota"] == counted.prompt_tokens + 4 * counted.completion_tokens


def test_embeddings_are_relayed_and_charged(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(input_tokens=1000, path="/v1/embeddings")
    answer = sdk(relay, who).embeddings.create(model="embed-test", input=["a", "b"])
    assert len(answer.data) == 2
    [row] = settled(relay, who, 1)
    assert row["quota"] == 500  # 1,000 tokens at 1 USD per million
    consistent(relay)


def test_models_lists_what_is_offered_and_allowed_to_the_key(relay: Relay) -> None:
    everything = customer(relay)
    limited = customer(relay, models=(MODEL,))
    assert {m.id for m in sdk(relay, everything).models.list()} == {MODEL, "embed-test", CLAUDE}
    assert [m.id for m in sdk(relay, limited).models.list()] == [MODEL]


def test_one_model_is_retrieved_as_openai_sdks_ask_for_it(relay: Relay) -> None:
    limited = customer(relay, models=(MODEL,))
    found = sdk(relay, limited).models.retrieve(MODEL)
    assert (found.id, found.object) == (MODEL, "model")
    with pytest.raises(openai.NotFoundError):
        sdk(relay, limited).models.retrieve(CLAUDE)  # offered, but not to this key
    with pytest.raises(openai.NotFoundError):
        sdk(relay, limited).models.retrieve("no-such-model")


# ---------------------------------------------------------------- refusals


def test_refusals_raise_the_sdks_matching_exceptions(relay: Relay) -> None:
    who = customer(relay, models=(MODEL,))
    seen = len(relay.upstream.requests)
    client = sdk(relay, who)
    with pytest.raises(openai.AuthenticationError):
        sdk(relay, Customer(0, 0, "sk-ql-wrong")).models.list()
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="embed-test", input="x")
    with pytest.raises(openai.NotFoundError):
        sdk(relay, customer(relay)).chat.completions.create(
            model="no-such-model", messages=MESSAGES
        )  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
    assert len(relay.upstream.requests) == seen  # none of them went upstream
    assert log_rows(relay, who) == []


def test_a_balance_too_small_is_402_not_retried_and_nothing_goes_upstream(relay: Relay) -> None:
    who = customer(relay, quota=10)
    seen = len(relay.upstream.requests)
    client = sdk(relay, who, max_retries=3)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1000)  # type: ignore[arg-type]
    assert refused.value.status_code == 402
    assert refused.value.code == "insufficient_quota"
    assert len(relay.upstream.requests) == seen
    assert balance(relay, who).quota == 10
    consistent(relay)


def test_without_a_cap_none_is_sent_when_the_balance_covers_the_models_maximum(
    relay: Relay,
) -> None:
    """SPEC §8b: no cap from the client reserves the model's maximum output and sends no cap
    upstream (Codex's long reasoning turns are not cut at a default of ours)."""
    who = customer(relay)
    raw = sdk(relay, who).chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    sent = relay.upstream.requests_to("/v1/chat/completions")[-1].json()
    assert "max_tokens" not in sent and "max_completion_tokens" not in sent
    assert raw.headers.get("x-quotaledger-output-cap") is None
    [row] = settled(relay, who, 1)
    assert row["quota_reserved"] >= 32_768 * 4  # the fallback maximum output, at 4 quota each
    consistent(relay)


def test_a_cap_the_balance_cannot_cover_is_lowered_sent_and_announced(relay: Relay) -> None:
    who = customer(relay, quota=20_000)  # the prompt and ~4,900 output tokens at 4 quota each
    raw = sdk(relay, who).chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=32_000
    )  # type: ignore[arg-type]
    sent = relay.upstream.requests_to("/v1/chat/completions")[-1].json()
    assert 1_024 <= sent["max_tokens"] < 5_000
    assert raw.headers["x-quotaledger-output-cap"] == str(sent["max_tokens"])
    settled(relay, who, 1)
    assert balance(relay, who).quota >= 0
    consistent(relay)


def test_a_balance_below_the_prompt_and_the_minimum_output_is_refused(relay: Relay) -> None:
    who = customer(relay, quota=1_000)  # less than 1,024 output tokens at 4 quota each
    seen = len(relay.upstream.requests)
    with pytest.raises(openai.APIStatusError) as refused:
        sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.status_code == 402
    assert len(relay.upstream.requests) == seen
    assert balance(relay, who).quota == 1_000
    consistent(relay)


# ---------------------------------------------------------------- failures


def test_a_500_before_the_first_byte_fails_over_to_the_next_channel(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(status=500, path="/v1/chat/completions")
    completion = sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == ANSWER
    [row] = settled(relay, who, 1)
    assert row["channel"] == "secondary"
    assert balance(relay, who).request_count == 1  # once per client request, not per try


def test_when_every_channel_fails_the_client_gets_502_and_nothing_is_charged(
    relay: Relay,
) -> None:
    who = customer(relay)
    before = balance(relay, who)
    relay.upstream.script(status=503, path="/v1/chat/completions", times=3)
    with pytest.raises(openai.APIStatusError) as failed:
        sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert failed.value.status_code == 502
    assert "503" in failed.value.message
    after = balance(relay, who)
    assert (after.quota, after.used_quota, after.request_count) == (before.quota, 0, 0)
    consistent(relay)


def test_a_stream_cut_after_content_ends_with_an_error_and_charges_what_was_delivered(
    relay: Relay,
) -> None:
    who = customer(relay)
    relay.upstream.script(reset_after=4, usage="none", path="/v1/chat/completions")
    received = []
    with pytest.raises(openai.APIError):
        for chunk in sdk(relay, who).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,  # type: ignore[arg-type]
        ):
            received.append(chunk)
    assert received  # content came before the failure
    [row] = settled(relay, who, 1)
    assert row["quota"] > 0 and row["usage_source"] == "local"
    assert row["end_reason"] == "upstream_failed"
    consistent(relay)


def test_a_stream_cut_before_content_is_logged_200_as_the_client_saw_and_charges_nothing(
    relay: Relay,
) -> None:
    """Issue 26: the 200 head had gone out when the upstream broke (after its role chunk,
    before any content); the row said 502, a status the client never got."""
    who = customer(relay)
    before = balance(relay, who)
    relay.upstream.script(reset_after=1, path="/v1/chat/completions")
    with chat_stream(relay, who) as answer:
        body = b"".join(answer.iter_raw())
    assert answer.status_code == 200
    assert b'"error"' in body and body.rstrip().endswith(b"data: [DONE]")
    [row] = settled(relay, who, 1)
    assert (row["status"], row["end_reason"]) == (200, "upstream_failed")
    assert row["quota"] == 0 and row["completion_tokens"] == 0
    after = balance(relay, who)
    assert (after.quota, after.used_quota) == (before.quota, before.used_quota)
    consistent(relay)


def test_a_client_that_leaves_cancels_upstream_and_pays_for_what_it_received(
    relay: Relay,
) -> None:
    who = customer(relay)
    relay.upstream.script(duration=20.0, usage="none", path="/v1/chat/completions")
    cancelled = relay.upstream.cancellations
    with chat_stream(relay, who) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw())  # the first event arrived; then the client goes away
    [row] = settled(relay, who, 1)
    assert row["end_reason"] == "client_disconnected"
    assert row["quota"] > 0  # the prompt, at least
    deadline = time.monotonic() + 5
    while relay.upstream.cancellations == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.upstream.cancellations == cancelled + 1
    consistent(relay)


def test_a_client_that_leaves_a_whole_answer_cancels_upstream_and_pays_the_prompt(
    relay: Relay,
) -> None:
    """SPEC §8b: a non-streamed call whose client leaves (an SDK timing out on a model that
    thinks for minutes) is cancelled upstream; the prompt is charged; the row says 499."""
    who = customer(relay)
    before = balance(relay, who)
    relay.upstream.script(first_byte_delay=20.0, path="/v1/chat/completions")
    cancelled = relay.upstream.cancellations
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            relay.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {who.key}"},
            json={"model": MODEL, "messages": MESSAGES},
            timeout=httpx.Timeout(5.0, read=1.0),
        )
    [row] = settled(relay, who, 1)
    assert (row["status"], row["end_reason"]) == (499, "client_disconnected")
    assert row["completion_tokens"] == 0 and row["prompt_tokens"] > 0
    assert row["quota"] > 0  # the prompt
    after = balance(relay, who)
    assert before.quota - after.quota == row["quota"]
    assert after.request_count == before.request_count  # not an answered request
    deadline = time.monotonic() + 5
    while relay.upstream.cancellations == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.upstream.cancellations == cancelled + 1
    consistent(relay)


# ---------------------------------------------------------------- the balance never below zero


def test_concurrent_requests_beyond_the_balance_get_402_and_quota_never_goes_negative(
    relay: Relay,
) -> None:
    probe = customer(relay)
    sdk(relay, probe).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)  # type: ignore[arg-type]
    [first] = settled(relay, probe, 1)
    reservation = first["quota_reserved"]
    who = customer(relay, quota=20 * reservation)
    # Each answer costs exactly its reservation: no early release lets a 21st through.
    prompt = reservation - 4 * 100
    relay.upstream.script(input_tokens=prompt, output_tokens=100, times=100)

    def one(_: int) -> int:
        try:
            sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)  # type: ignore[arg-type]
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(pool.map(one, range(100)))
    relay.upstream.reset()
    assert statuses.count(200) == 20
    assert statuses.count(402) == 80
    settled(relay, who, 20)
    after = balance(relay, who)
    assert after.quota == 0 and after.request_count == 20
    consistent(relay)


# ---------------------------------------------------------------- secrets


def test_the_upstream_key_appears_in_no_log_no_answer_and_no_database_column(
    relay: Relay,
) -> None:
    who = customer(relay)
    sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    models = httpx.get(relay.v1 + "/models", headers={"Authorization": f"Bearer {who.key}"})
    path = Path(relay.server.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as connection:
        dump = "\n".join(connection.iterdump())
    sent = relay.upstream.requests_to("/v1/chat/completions")[-1]
    assert sent.header("authorization") == f"Bearer {UPSTREAM_KEY}"  # it did go upstream
    for place in (relay.server.log(), models.text, dump):
        assert UPSTREAM_KEY not in place
    assert who.key not in relay.server.log()
    assert not re.search(r"sk-ql-[0-9A-Za-z]{20}", sent.header("authorization") or "")


# ---------------------------------------------------------------- metrics


def test_metrics_count_relayed_requests_tokens_and_quota(relay: Relay) -> None:
    who = customer(relay)
    relay.upstream.script(input_tokens=10, output_tokens=5, path="/v1/chat/completions")
    sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)
    settled(relay, who, 1)
    text = httpx.get(relay.server.base_url + "/metrics").text
    lines = {
        line.split(" ")[0]: line.split(" ")[1] for line in text.splitlines() if line[:1] != "#"
    }
    assert float(lines[f'quotaledger_relay_requests_total{{model="{MODEL}",status="200"}}']) >= 1
    assert float(lines[f'quotaledger_relay_quota_charged_total{{model="{MODEL}"}}']) >= 30
    assert f'quotaledger_relay_time_to_first_token_seconds_count{{model="{MODEL}"}}' in lines
    assert "quotaledger_relay_open_reservations" in lines


def test_an_upstream_event_without_end_is_cut_at_its_bound_and_charged_as_delivered(
    relay: Relay,
) -> None:
    who = customer(relay)
    # Two events, then 16 MiB of one event's data with no end of line.
    relay.upstream.script(endless_event_after=2, usage="none", path="/v1/chat/completions")
    with pytest.raises(openai.APIError, match="event over 1048576 bytes"):
        for _ in sdk(relay, who).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True
        ):
            pass
    [row] = settled(relay, who, 1)
    assert row["end_reason"] == "upstream_failed"
    consistent(relay)
