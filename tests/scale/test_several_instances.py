"""Several `quotaledger serve` processes on one PostgreSQL behave as one server:
thousands of concurrent charges with replays, exact rejections, linearizable reads, token
replacement seen everywhere, rate limits shared through Redis."""

from __future__ import annotations

import asyncio
import itertools
import random

import httpx
import pytest
from scale_support import Instances, admin_token

from quotaledger.store.database import Database
from support import LiveServer, check_invariant, token_from

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PRICE_USD = "0.02"  # 10,000 quota per call


def _prepare(servers: list[LiveServer], database_url: str, quota: int) -> Database:
    created = servers[0].cli(
        "user",
        "create",
        "alice",
        "--password-stdin",
        "--quota",
        str(quota),
        input="alice-password-123\n",
    )
    assert created.returncode == 0, created.stderr
    assert servers[0].cli("price", "set", "m", "--per-call-usd", PRICE_USD).returncode == 0
    from quotaledger.settings import normalise_database_url

    return Database(normalise_database_url(database_url))


async def _charge(
    client: httpx.AsyncClient, server: LiveServer, token: str, request_id: str
) -> httpx.Response:
    return await client.post(
        server.base_url + "/api/usage",
        json={"username": "alice", "model": "m", "request_id": request_id},
        headers={"Authorization": token},
    )


async def _flood(
    servers: list[LiveServer], token: str, request_ids: list[str], concurrency: int = 32
) -> list[tuple[str, httpx.Response]]:
    """Send each request_id to a random instance, `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)
    rng = random.Random(7)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(request_id: str) -> tuple[str, httpx.Response]:
            async with limit:
                return request_id, await _charge(client, rng.choice(servers), token, request_id)

        return await asyncio.gather(*(one(r) for r in request_ids))


def test_concurrent_charges_with_replays_over_instances_keep_the_ledger_exact(
    instances: Instances, postgres_url: str
) -> None:
    servers = instances(postgres_url, 3, QUOTALEDGER_RATE_LIMIT_BALANCE="off")
    covered = 700  # the balance covers exactly 700 charges
    database = _prepare(servers, postgres_url, covered * 10_000)
    token = admin_token(servers[0])
    unique = [f"req-{i}" for i in range(1_000)]
    replays = random.Random(3).choices(unique, k=1_000)  # each a second or third time

    results = asyncio.run(_flood(servers, token, unique + replays))

    codes = [r.status_code for _, r in results]
    assert set(codes) <= {200, 402}, [
        r.text for _, r in results if r.status_code not in (200, 402)
    ][:3]
    charged = {rid for rid, r in results if r.status_code == 200}
    assert len(charged) == covered  # exactly N successes, the rest 402
    answers: dict[str, set[bytes]] = {}
    for rid, response in results:
        if response.status_code == 200:
            answers.setdefault(rid, set()).add(response.content)
    assert all(len(bodies) == 1 for bodies in answers.values())  # replays answer identically
    check_invariant(database)
    with database.read() as connection:
        from sqlalchemy import text

        quota, used = connection.execute(
            text("SELECT quota, used_quota FROM users WHERE username = 'alice'")
        ).one()
    assert (quota, used) == (0, covered * 10_000)
    database.dispose()


def test_with_demand_above_the_balance_the_rest_is_below_the_smallest_cost(
    instances: Instances, postgres_url: str
) -> None:
    servers = instances(postgres_url, 2, QUOTALEDGER_RATE_LIMIT_BALANCE="off")
    database = _prepare(servers, postgres_url, 1_234_567)  # 123 charges and 4,567 left over
    token = admin_token(servers[0])

    results = asyncio.run(_flood(servers, token, [f"r{i}" for i in range(300)]))

    assert sum(r.status_code == 200 for _, r in results) == 123
    check_invariant(database)
    with database.read() as connection:
        from sqlalchemy import text

        quota = connection.execute(text("SELECT quota FROM users WHERE username='alice'")).scalar()
    assert 0 <= quota < 10_000
    database.dispose()


def test_after_a_charge_no_instance_shows_a_higher_balance(
    instances: Instances, postgres_url: str
) -> None:
    servers = instances(postgres_url, 2, QUOTALEDGER_RATE_LIMIT_BALANCE="off")
    _prepare(servers, postgres_url, 10_000_000)
    admin = admin_token(servers[0])
    alice = token_from(servers[1].base_url, "alice", "alice-password-123")
    pairs = itertools.cycle([(servers[0], servers[1]), (servers[1], servers[0])])

    with httpx.Client(timeout=30) as client:
        for i in range(40):
            writer, reader = next(pairs)
            charged = client.post(
                writer.base_url + "/api/usage",
                json={"username": "alice", "model": "m", "request_id": f"lin-{i}"},
                headers={"Authorization": admin},
            )
            seen = client.get(reader.base_url + "/api/user/self", headers={"Authorization": alice})
            assert seen.json()["data"]["quota"] <= charged.json()["data"]["quota_remaining"]


def test_a_token_replaced_through_one_instance_is_refused_by_another(
    instances: Instances, postgres_url: str
) -> None:
    servers = instances(postgres_url, 2)
    _prepare(servers, postgres_url, 1_000_000)
    old = token_from(servers[0].base_url, "alice", "alice-password-123")
    assert (
        httpx.get(
            servers[1].base_url + "/api/user/self", headers={"Authorization": old}
        ).status_code
        == 200
    )

    new = token_from(servers[0].base_url, "alice", "alice-password-123")

    refused = httpx.get(servers[1].base_url + "/api/user/self", headers={"Authorization": old})
    accepted = httpx.get(servers[1].base_url + "/api/user/self", headers={"Authorization": new})
    assert refused.status_code == 401
    assert accepted.status_code == 200


@pytest.mark.redis
def test_a_rate_limit_is_shared_through_redis(instances: Instances, postgres_url: str) -> None:
    from support import REDIS_URL, redis_available

    if not redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    servers = instances(
        postgres_url, 2, QUOTALEDGER_REDIS_URL=REDIS_URL, QUOTALEDGER_RATE_LIMIT_BALANCE="4/minute"
    )
    _prepare(servers, postgres_url, 1_000_000)
    token = token_from(servers[0].base_url, "alice", "alice-password-123")

    codes = [
        httpx.get(
            servers[i % 2].base_url + "/api/user/self", headers={"Authorization": token}
        ).status_code
        for i in range(5)
    ]

    assert codes == [200, 200, 200, 200, 429]  # one budget of 4 across both instances
