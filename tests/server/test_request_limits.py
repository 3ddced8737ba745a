"""The per-process bounds of the front door (`server/request_limits.py`): requests in
progress per client address, and bytes of large bodies in flight."""

from __future__ import annotations

import asyncio

import pytest

from quotaledger.errors import Busy
from quotaledger.server.errors import HTTPError
from quotaledger.server.request_limits import AddressGate, BodyBudget


def test_an_address_over_its_limit_is_429_and_others_are_not_counted_with_it() -> None:
    gate = AddressGate(2)
    with gate.enter("10.0.0.1"), gate.enter("10.0.0.1"):
        with pytest.raises(HTTPError) as refused, gate.enter("10.0.0.1"):
            pass
        with gate.enter("10.0.0.2"):
            pass
    assert refused.value.status_code == 429
    assert gate.held == {}  # every request left: nothing is kept per address


def test_a_request_that_fails_gives_its_place_back() -> None:
    gate = AddressGate(1)
    with pytest.raises(RuntimeError), gate.enter("10.0.0.1"):
        raise RuntimeError("the endpoint broke")
    with gate.enter("10.0.0.1"):
        assert gate.held == {"10.0.0.1": 1}


async def test_a_body_waits_for_room_and_gets_it_when_another_leaves() -> None:
    budget = BodyBudget(100)
    order: list[str] = []

    async def second() -> None:
        async with budget.hold(60, within=5):
            order.append("second in")

    async with budget.hold(60, within=5):
        task = asyncio.ensure_future(second())
        await asyncio.sleep(0.05)
        order.append("first out")
    await task

    assert order == ["first out", "second in"]
    assert budget.used == 0


async def test_a_body_that_finds_no_room_in_time_is_busy() -> None:
    budget = BodyBudget(100)
    async with budget.hold(100, within=1):
        with pytest.raises(Busy):
            async with budget.hold(1, within=0.05):
                pass
    assert budget.used == 0
