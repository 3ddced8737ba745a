"""What must never stop or mislead the watcher: a wall clock stepping back, absurd
`Retry-After`s, one account's poll that cannot be stored, cookies shared between accounts,
tokens in a relay's payload, Apprise answering with a plain bool."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from monitor_support import (
    TOKEN,
    LoopbackServer,
    Relay,
    RelayHandler,
    Rig,
    Webhook,
    account_toml,
    defaults_toml,
)

from quotaledger.client import AsyncBalanceClient
from quotaledger.client.async_client import http_session
from quotaledger.client.exchange import Plan, Site
from quotaledger.client.providers.newapi import NewAPI
from quotaledger.monitor import messages
from quotaledger.monitor.config import AccountConfig
from quotaledger.monitor.notify import Notifier, accepted_count, apprise_module
from quotaledger.monitor.watcher import Watcher, default_client
from quotaledger.settings import Secret

INTERVAL_AND_JITTER = 5 * 60 * 1.1


class LoopClock:
    """The event loop's monotonic clock, which the test can move forward."""

    def __init__(self, real: Callable[[], float]) -> None:
        self.real, self.offset = real, 0.0

    def __call__(self) -> float:
        return self.real() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
async def loop_clock(monkeypatch: pytest.MonkeyPatch) -> LoopClock:
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop.time)
    monkeypatch.setattr(loop, "time", clock)
    return clock


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def polled(rig: Rig, relay: Relay, count: int) -> None:
    """Wait until the relay has been asked `count` times and the round is over (the loop's
    clock must not jump under a request in flight: its timeout runs on that clock)."""
    assert rig.history is not None
    history = rig.history
    await eventually(lambda: len(relay.authorizations) == count)
    await eventually(lambda: len(history.polls("prod")) == count)
    await asyncio.sleep(0.05)


async def test_a_wall_clock_stepping_back_does_not_park_the_polls(
    rig: Rig, relay: Relay, loop_clock: LoopClock
) -> None:
    assert rig.watcher is not None
    stop = asyncio.Event()
    task = asyncio.create_task(rig.watcher.run(stop))
    await polled(rig, relay, 1)
    rig.clock.advance(days=-1)  # NTP steps the wall clock back a day
    loop_clock.advance(INTERVAL_AND_JITTER + 1)
    await polled(rig, relay, 2)
    stop.set()
    await asyncio.wait_for(task, timeout=2)


@pytest.mark.parametrize(
    ("header", "first_wait"),
    [("inf", INTERVAL_AND_JITTER), ("-30", INTERVAL_AND_JITTER), ("1e12", 3600.0)],
)
async def test_an_absurd_retry_after_never_stops_or_parks_the_watcher(
    rig: Rig, relay: Relay, loop_clock: LoopClock, header: str, first_wait: float
) -> None:
    assert rig.watcher is not None
    relay.failing, relay.failing_headers = 429, {"Retry-After": header}
    stop = asyncio.Event()
    task = asyncio.create_task(rig.watcher.run(stop))
    await polled(rig, relay, 1)
    loop_clock.advance(INTERVAL_AND_JITTER + 1)
    await asyncio.sleep(0.1)
    assert not task.done(), task.exception()
    if first_wait > INTERVAL_AND_JITTER:
        assert len(relay.authorizations) == 1  # still waiting for what the server asked
    loop_clock.advance(first_wait - INTERVAL_AND_JITTER)  # up to max(interval, 1 h) at most
    await polled(rig, relay, 2)
    stop.set()
    await asyncio.wait_for(task, timeout=2)


async def test_a_reasonable_retry_after_is_honoured(rig: Rig, relay: Relay) -> None:
    assert rig.watcher is not None
    relay.failing, relay.failing_headers = 429, {"Retry-After": "1200"}
    results = await rig.poll()
    delay = rig.watcher._next_delay(results[0])
    assert delay.total_seconds() == 1200


class Inflating(NewAPI):
    """A third-party provider with a bug: a request count no database can hold."""

    name = "inflating"

    def plan(self, site: Site) -> Plan:
        balance = yield from super().plan(site)
        return dataclasses.replace(balance, request_count=10**40)


async def test_one_account_that_cannot_be_stored_does_not_stop_the_round(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    accounts = account_toml(relay, "bad") + account_toml(relay, "prod", token_env="DEV_TOKEN")
    rig: Rig = await rig_factory(defaults_toml(webhook.url) + accounts)

    def factory(account: AccountConfig, token: Secret, http: aiohttp.ClientSession) -> Any:
        if account.name != "bad":
            return default_client(account, token, http)
        return AsyncBalanceClient(account.base_url, token.reveal(), provider=Inflating())

    assert rig.watcher is not None and rig.history is not None
    watcher = Watcher(
        rig.watcher.config, rig.watcher.tokens, rig.history, Notifier(), now=rig.clock,
        client_factory=factory,
    )  # fmt: skip
    async with watcher:
        results = await watcher.poll_round()
    bad, prod = results
    assert prod.record.state == "OK" and prod.outcome.poll.ok
    assert not bad.outcome.poll.ok and bad.record.failures == 1
    assert "internal error: OverflowError" in (bad.outcome.poll.error or "")
    assert rig.history.record("bad").failures == 1  # counted, on its way to UNKNOWN


async def test_a_cookie_one_relay_sets_is_never_sent_with_another_account(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    other = Relay()
    server = LoopbackServer(RelayHandler, other)  # the same host, another port
    other.base_url = f"http://127.0.0.1:{server.port}"
    try:
        relay.set_cookie = "session=prod-session-secret; Path=/"
        accounts = account_toml(relay, "prod") + account_toml(other, "dev", token_env="DEV_TOKEN")
        rig: Rig = await rig_factory(defaults_toml(webhook.url) + accounts)
        for _ in range(3):
            await rig.poll(minutes=5)
    finally:
        server.close()
    assert other.cookies == ["", "", ""]
    assert relay.cookies == ["", "", ""]  # nor back to the relay itself: nothing is kept


async def test_tokens_in_a_relays_payload_never_reach_the_balance(rig: Rig, relay: Relay) -> None:
    relay.extra = {"access_token": TOKEN, "sk": {"api_key": "sk-upstream-123456789"}}
    assert rig.watcher is not None
    account = rig.watcher.config.accounts[0]
    async with http_session() as http:
        client = default_client(account, rig.watcher.tokens[account.name], http)
        balance = await client.balance()
    assert TOKEN not in repr(balance.raw) and "sk-upstream" not in repr(balance.raw)
    assert balance.raw["data"]["quota"] == relay.quota


@pytest.mark.parametrize(
    ("result", "accepted"), [(True, 2), (False, 0), (None, 0), ([True, False], 1)]
)
def test_what_apprise_returns_is_counted_whatever_its_version(result: Any, accepted: int) -> None:
    # Apprise 1.x returns a bool (None for no match); 2.x an iterable AppriseResult.
    assert accepted_count(result, 2) == accepted


async def test_a_real_apprise_result_is_counted(memory: list[Any]) -> None:
    target = apprise_module().Apprise()
    target.add("memory://")
    result = await target.async_notify(body="b", title="t", timeout=5)
    assert accepted_count(result, 1) == 1 and len(memory) == 1


async def test_nothing_sent_to_no_urls_is_not_delivered() -> None:
    message = messages.test_message(datetime.now(UTC))
    assert await Notifier().send([], message) is False
