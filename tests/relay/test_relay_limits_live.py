"""SPEC §12's rate limits on the relay end to end: the official SDKs against a real `quotaledger
serve` process (and two of them on one Redis and PostgreSQL), in front of the example fake
upstream. A key's RPM, TPM and concurrency refuse with 429 in each client's own format; every
answer says the tightest limits in OpenAI's (and Anthropic's) headers; TPM is corrected to the
usage at settlement; concurrency slots are freed when a stream ends or its client leaves."""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from relay_live import (
    CLAUDE,
    MESSAGES,
    MODEL,
    Customer,
    Relay,
    customer,
    log_rows,
    own_redis,
    relay_server,
    sdk_client,
    wait_for,
)

from quotaledger.relay.limits import Rates
from support import _empty_postgres, free_port

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    yield from relay_server(tmp_path_factory)


def sdk(relay: Relay, who: Customer) -> openai.OpenAI:
    return sdk_client(openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=0))


def claude_sdk(relay: Relay, who: Customer) -> anthropic.Anthropic:
    client = anthropic.Anthropic(api_key=who.key, base_url=relay.server.base_url, max_retries=0)
    return sdk_client(client)


def upstream_calls(relay: Relay, path: str) -> int:
    return len(relay.upstream.requests_to(path))


# ---------------------------------------------------------------- RPM, in each client's format


def _chat(relay: Relay, who: Customer) -> Any:
    return sdk(relay, who).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=MESSAGES,
    )


def _responses(relay: Relay, who: Customer) -> Any:
    return sdk(relay, who).responses.with_raw_response.create(model=MODEL, input="Say hello.")


def _messages(relay: Relay, who: Customer) -> Any:
    return claude_sdk(relay, who).messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, messages=MESSAGES
    )


@pytest.mark.parametrize(
    ("call", "path"),
    [(_chat, CHAT), (_responses, "/v1/responses")],
    ids=["chat", "responses"],
)
def test_over_its_rpm_an_openai_client_gets_429_rate_limit_exceeded_with_retry_after(
    relay: Relay, call: Any, path: str
) -> None:
    who = customer(relay, rates=Rates(rpm=2, tpm=1_000_000))
    answers = [call(relay, who) for _ in range(2)]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["1", "0"]
    for answer in answers:
        assert answer.headers["x-ratelimit-limit-requests"] == "2"
        assert answer.headers["x-ratelimit-reset-requests"].endswith("s")
        assert answer.headers["x-ratelimit-limit-tokens"] == "1000000"
        assert int(answer.headers["x-ratelimit-remaining-tokens"]) < 1_000_000
        answer.parse()  # the SDK reads the answer as its own
    sent = upstream_calls(relay, path)

    with pytest.raises(openai.RateLimitError) as refused:
        call(relay, who)
    assert refused.value.code == "rate_limit_exceeded"
    assert "2 requests per minute" in refused.value.message
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    assert upstream_calls(relay, path) == sent  # nothing went upstream
    assert len(log_rows(relay, who)) == 2


def test_over_its_rpm_an_anthropic_client_gets_429_rate_limit_error_with_retry_after(
    relay: Relay,
) -> None:
    who = customer(relay, rates=Rates(rpm=2, tpm=1_000_000))
    answers = [_messages(relay, who) for _ in range(2)]
    for answer, remaining in zip(answers, ("1", "0"), strict=True):
        assert answer.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert answer.headers["anthropic-ratelimit-requests-remaining"] == remaining
        assert answer.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert answer.headers["anthropic-ratelimit-tokens-limit"] == "1000000"
        assert answer.headers["x-ratelimit-remaining-requests"] == remaining
        answer.parse()
    sent = upstream_calls(relay, "/v1/messages")

    with pytest.raises(anthropic.RateLimitError) as refused:
        _messages(relay, who)
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    assert upstream_calls(relay, "/v1/messages") == sent


def test_an_answer_without_limits_carries_no_rate_limit_headers(relay: Relay) -> None:
    answer = _chat(relay, customer(relay))
    assert not [name for name in answer.headers if name.startswith("x-ratelimit")]


def test_count_tokens_has_a_bucket_of_its_own_and_takes_nothing_from_the_rpm(
    relay: Relay,
) -> None:
    who = customer(relay, rates=Rates(rpm=1))
    client = claude_sdk(relay, who)
    for _ in range(3):  # the key's RPM of 1 does not limit them
        client.messages.count_tokens(model=CLAUDE, messages=MESSAGES)
    _messages(relay, who).parse()  # ... nor do they take its one request


# ---------------------------------------------------------------- TPM


def _tokens_left(answer: Any) -> int:
    return int(answer.headers["x-ratelimit-remaining-tokens"])


def test_tpm_admits_on_the_estimate_plus_the_cap_and_is_corrected_at_settlement(
    relay: Relay,
) -> None:
    who = customer(relay, rates=Rates(tpm=1_500))

    def ask() -> Any:
        return sdk(relay, who).chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, max_tokens=1_000
        )

    first = ask()
    estimate = 1_500 - _tokens_left(first)
    assert estimate > 1_000  # the prompt estimate and the whole cap were taken
    [row] = log_rows(relay, who)
    used = row["prompt_tokens"] + row["completion_tokens"]
    assert used < 100
    # Two estimates do not fit in 1,500: the second is admitted because the first counted
    # what it used once it was settled.
    second = ask()
    assert _tokens_left(second) == 1_500 - used - estimate


def test_tpm_refuses_while_an_estimate_is_held_by_a_running_stream(relay: Relay) -> None:
    who = customer(relay, rates=Rates(tpm=1_500))
    relay.upstream.script(path=CHAT, stall_after=1)
    with held_stream(relay, who, max_tokens=1_000) as first:
        assert first.status_code == 200
        with pytest.raises(openai.RateLimitError) as refused:
            sdk(relay, who).chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=1_000
            )
        assert "1500 tokens per minute" in refused.value.message


# ---------------------------------------------------------------- concurrency


@contextlib.contextmanager
def held_stream(relay: Relay, who: Customer, base_url: str | None = None,
                **fields: Any) -> Iterator[httpx.Response]:  # fmt: skip
    """A streamed chat completion open until the block ends (its head and, when admitted,
    its first event have arrived); the client then closes its connection."""
    with _stream(relay, who, base_url, **fields) as answer:
        events = answer.iter_raw()  # held: dropping it would close the connection now
        if answer.status_code == 200:
            next(events)
        else:
            answer.read()  # a refusal, whole
        yield answer


@contextlib.contextmanager
def _stream(relay: Relay, who: Customer, base_url: str | None = None,
            **fields: Any) -> Iterator[httpx.Response]:  # fmt: skip
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, **fields}
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", (base_url or relay.v1) + "/chat/completions", json=body,
            headers={"Authorization": f"Bearer {who.key}"},
        ) as answer,
    ):  # fmt: skip
        yield answer


def _stream_status(relay: Relay, who: Customer, base_url: str | None = None) -> int:
    """The status of a stream read to its end (when admitted)."""
    with _stream(relay, who, base_url) as answer:
        answer.read()
        return answer.status_code


def test_a_second_stream_is_refused_while_the_first_runs_and_admitted_once_it_ended(
    relay: Relay,
) -> None:
    who = customer(relay, rates=Rates(concurrency=1))
    relay.upstream.script(path=CHAT, stall_after=1)
    with held_stream(relay, who) as first:
        assert first.status_code == 200
        with held_stream(relay, who) as second:
            assert second.status_code == 429
            assert second.headers["retry-after"] == "1"
            error = second.json()["error"]
            assert error["code"] == "rate_limit_exceeded"
            assert "1 concurrent requests" in error["message"]
    # The first stream's client left: its slot comes free once the relay has seen it go.
    wait_for(lambda: _stream_status(relay, who) == 200, 10, "the slot to be freed")
    # A stream that ran to its end freed its slot as it ended: at once.
    assert _stream_status(relay, who) == 200
    assert _stream_status(relay, who) == 200


@pytest.fixture(scope="module")
def short_leases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay whose concurrency leases lapse 5 s after their last renewal."""
    yield from relay_server(tmp_path_factory, env={"QUOTALEDGER_LIMITS_LEASE_TTL": "5"})


def test_a_stream_longer_than_the_lease_ttl_keeps_its_slot_by_renewing_it(
    short_leases: Relay,
) -> None:
    relay = short_leases
    who = customer(relay, rates=Rates(concurrency=1))
    relay.upstream.script(path=CHAT, stall_after=1)
    with held_stream(relay, who) as first:
        assert first.status_code == 200
        time.sleep(7)  # past the TTL: only the stream's heartbeat keeps the lease
        with held_stream(relay, who) as second:
            assert second.status_code == 429
    wait_for(lambda: _stream_status(relay, who) == 200, 10, "the slot to be freed")


def test_a_whole_answer_refused_upstream_frees_its_slot(relay: Relay) -> None:
    who = customer(relay, rates=Rates(concurrency=1))
    relay.upstream.script(path=CHAT, status=400, times=1)
    with pytest.raises(openai.BadRequestError):
        sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)
    sdk(relay, who).chat.completions.create(model=MODEL, messages=MESSAGES)


# ---------------------------------------------------------------- exact across instances


@pytest.fixture(scope="module")
def two_instances_on_redis(
    tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str
) -> Iterator[Relay]:
    with own_redis() as (url, _process):
        _empty_postgres(postgres_server_url)
        env = {"QUOTALEDGER_REDIS_URL": url}
        yield from relay_server(tmp_path_factory, postgres_server_url, instances=2, env=env)


def _statuses(count: int, one: Any) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.redis
@pytest.mark.postgres
def test_a_burst_over_two_instances_admits_exactly_the_rpm(two_instances_on_redis: Relay) -> None:
    relay = two_instances_on_redis
    who = customer(relay, rates=Rates(rpm=10))
    urls = [server.base_url + "/v1" for server in relay.servers]

    def one(index: int) -> int:
        with openai.OpenAI(api_key=who.key, base_url=urls[index % 2], max_retries=0) as client:
            try:
                client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
                return 200
            except openai.APIStatusError as exc:
                return exc.status_code

    statuses = _statuses(40, one)
    assert (statuses.count(200), statuses.count(429)) == (10, 30)


@pytest.mark.redis
@pytest.mark.postgres
def test_concurrent_streams_over_two_instances_hold_exactly_the_slots_and_free_them(
    two_instances_on_redis: Relay,
) -> None:
    relay = two_instances_on_redis
    who = customer(relay, rates=Rates(concurrency=3))
    urls = [server.base_url + "/v1" for server in relay.servers]
    relay.upstream.script(path=CHAT, stall_after=1, times=3)
    with contextlib.ExitStack() as streams:
        # Every stream admitted stays open (its upstream stalls) until all twelve have their
        # answer's head: nothing is freed during the burst.
        def one(index: int) -> int:
            opened = held_stream(relay, who, urls[index % 2])
            return streams.enter_context(opened).status_code

        statuses = _statuses(12, one)
        assert (statuses.count(200), statuses.count(429)) == (3, 9)
    # Their clients left: both instances see the slots free again.
    for url in urls:
        wait_for(lambda url=url: _stream_status(relay, who, url) == 200, 10, "the slots")


@pytest.fixture(scope="module")
def redis_away(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay whose Redis is a closed port, told to refuse rather than count alone."""
    env = {"QUOTALEDGER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "QUOTALEDGER_LIMITS_FALLBACK": "refuse"}  # fmt: skip
    yield from relay_server(tmp_path_factory, env=env)


def test_with_redis_away_and_the_refuse_fallback_a_limited_key_gets_503(
    redis_away: Relay,
) -> None:
    limited, free = customer(redis_away, rates=Rates(rpm=100)), customer(redis_away)
    with pytest.raises(anthropic.InternalServerError) as refused:
        claude_sdk(redis_away, limited).messages.create(
            model=CLAUDE, max_tokens=100, messages=MESSAGES
        )
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "5"
    assert "rate limits are unavailable" in refused.value.message
    # A key without limits asks Redis nothing: it is served.
    sdk(redis_away, free).chat.completions.create(model=MODEL, messages=MESSAGES)
