"""`SharedReplies`: what is the same for every account of a site (new-api's `/api/status`)
is asked once for all the clients that share it, against a live server that counts."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from client_payloads import NEWAPI_STATUS, QUOTALEDGER_SELF, TOKEN, json_answer
from client_server import FakeProvider

from quotaledger.client import AsyncBalanceClient, Balance
from quotaledger.client.async_client import http_session
from quotaledger.client.shared import SharedReplies

SELF, STATUS = "/api/user/self", "/api/status"
UNIT_STATUS = {**NEWAPI_STATUS, "data": {"quota_per_unit": 1_000_000}}


async def balances(server: FakeProvider, count: int, shared: SharedReplies | None) -> list[Balance]:
    """`count` clients of one site on one pool, all asking at the same time."""
    async with http_session() as http:
        clients = [
            AsyncBalanceClient(server.url, TOKEN, http_client=http, shared_replies=shared)
            for _ in range(count)
        ]
        return list(await asyncio.gather(*(client.balance() for client in clients)))


async def test_the_status_is_asked_once_for_many_clients_of_one_site(
    server: FakeProvider,
) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    server.route(STATUS, json_answer(UNIT_STATUS))
    shared = SharedReplies()
    found = await balances(server, 8, shared)
    assert (server.count(SELF), server.count(STATUS)) == (8, 1)
    assert {(b.quota_per_unit, b.usd) for b in found} == {(1_000_000, Decimal("24.997909"))}
    await balances(server, 8, shared)  # new clients, the same shared answers: kept for good
    assert (server.count(SELF), server.count(STATUS)) == (16, 1)


async def test_without_shared_replies_each_client_asks_as_before(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    server.route(STATUS, json_answer(UNIT_STATUS))
    await balances(server, 3, None)
    assert (server.count(SELF), server.count(STATUS)) == (3, 3)


async def test_a_failed_status_is_shared_until_forgotten_then_asked_again(
    server: FakeProvider,
) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    server.route(STATUS, json_answer({}, 503), json_answer(UNIT_STATUS))
    shared = SharedReplies()
    found = await balances(server, 5, shared)
    assert server.count(STATUS) == 1  # a status page that is down: one request, not five
    assert {b.quota_per_unit for b in found} == {500_000}
    assert {b.quota_per_unit for b in await balances(server, 5, shared)} == {500_000}
    assert server.count(STATUS) == 1
    shared.forget_failures()  # the watcher's next round
    assert {b.quota_per_unit for b in await balances(server, 5, shared)} == {1_000_000}
    assert server.count(STATUS) == 2


async def test_a_status_without_a_unit_is_kept_like_a_published_one(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    server.route(STATUS, json_answer({"success": False, "message": "not found"}, 404))
    shared = SharedReplies()
    await balances(server, 4, shared)
    shared.forget_failures()
    await balances(server, 4, shared)
    assert server.count(STATUS) == 1
