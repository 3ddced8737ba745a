"""The relay when instances die and share a database (SPEC §8): a reservation left open by
a killed instance is settled by the sweeper of another; two instances on one PostgreSQL
never let a balance go below zero."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from relay_live import (
    MESSAGES,
    MODEL,
    Relay,
    balance,
    chat_stream,
    consistent,
    customer,
    relay_server,
)

from quotaledger.store.tables import reservations, usage
from support import _empty_postgres

pytestmark = pytest.mark.slow


def _open_reservations(relay: Relay) -> int:
    with relay.database.read() as connection:
        return len(connection.execute(reservations.select()).all())


def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


@pytest.fixture
def short_ttl_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    # Short, but long enough that the stream below is not swept before its instance dies.
    env = {"QUOTALEDGER_RELAY_RESERVATION_TTL": "4", "QUOTALEDGER_RELAY_SWEEP_INTERVAL": "1"}
    yield from relay_server(tmp_path_factory, env=env)


def test_a_reservation_left_by_a_killed_instance_is_settled_by_the_sweeper(
    short_ttl_relay: Relay,
) -> None:
    relay = short_ttl_relay
    who = customer(relay)
    granted = balance(relay, who).quota
    relay.upstream.script(stall_after=2, path="/v1/chat/completions")
    with chat_stream(relay, who) as answer:
        chunks = answer.iter_raw()  # kept: a dropped iterator would close the connection
        next(chunks)  # the stream is running: its reservation is held
        assert _open_reservations(relay) == 1
        relay.server.process.kill()  # kill -9: nothing settles it
        relay.server.process.wait()
    assert balance(relay, who).quota < granted
    relay.start_instance()  # another instance; its sweeper finds the reservation
    _wait_for(lambda: _open_reservations(relay) == 0)
    after = balance(relay, who)
    with relay.database.read() as connection:
        [row] = connection.execute(usage.select().where(usage.c.user_id == who.user_id)).all()
    assert row.end_reason == "swept"
    assert after.quota == granted - row.quota  # released, less what was recorded as used
    consistent(relay)


def test_a_live_stream_is_never_swept_however_long_its_upstream_is_silent(
    short_ttl_relay: Relay,
) -> None:
    relay = short_ttl_relay
    who = customer(relay)
    relay.upstream.script(stall_after=2, path="/v1/chat/completions")
    with chat_stream(relay, who) as answer:
        chunks = answer.iter_raw()  # kept: a dropped iterator would close the connection
        next(chunks)
        time.sleep(9)  # over twice the TTL of 4 s, with the sweeper running every second
        assert _open_reservations(relay) == 1
    [row] = settled_rows(relay, who)
    assert row.end_reason == "client_disconnected" and row.quota > 0
    consistent(relay)


def settled_rows(relay: Relay, who: Any) -> list[Any]:
    _wait_for(lambda: _open_reservations(relay) == 0)
    with relay.database.read() as connection:
        return connection.execute(usage.select().where(usage.c.user_id == who.user_id)).all()


@pytest.fixture(scope="module")
def two_instances_on_postgres(
    tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str
) -> Iterator[Relay]:
    _empty_postgres(postgres_server_url)
    yield from relay_server(tmp_path_factory, postgres_server_url, instances=2)


@pytest.mark.postgres
def test_two_instances_on_postgresql_answer_only_what_the_balance_covers(
    two_instances_on_postgres: Relay,
) -> None:
    relay = two_instances_on_postgres
    probe = customer(relay)
    with openai.OpenAI(api_key=probe.key, base_url=relay.v1, max_retries=0) as client:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)  # type: ignore[arg-type]
    with relay.database.read() as connection:
        [first] = connection.execute(usage.select().where(usage.c.user_id == probe.user_id)).all()
    who = customer(relay, quota=20 * first.quota_reserved)
    # Each answer costs exactly its reservation, so exactly twenty fit, in any order.
    relay.upstream.script(input_tokens=first.quota_reserved - 400, output_tokens=100, times=100)
    urls = [server.base_url + "/v1" for server in relay.servers]

    def one(index: int) -> int:
        with openai.OpenAI(api_key=who.key, base_url=urls[index % 2], max_retries=0) as client:
            try:
                client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)  # type: ignore[arg-type]
                return 200
            except openai.APIStatusError as exc:
                return exc.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(pool.map(one, range(100)))
    relay.upstream.reset()
    assert statuses.count(200) == 20 and statuses.count(402) == 80
    after = balance(relay, who)
    assert after.quota == 0 and after.request_count == 20
    assert _open_reservations(relay) == 0
    consistent(relay)
