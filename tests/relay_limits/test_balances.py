"""Upstream balances (SPEC §12 ★): a real HTTP upstream answering DeepSeek's balance API,
polled with the client's provider; operator alerts through Apprise to a `json://` inbox."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from limits_support import FakeClock

from alert_inbox import Inbox, running_inbox
from quotaledger.monitor import channel_balances as edges
from quotaledger.relay import balances, channels
from quotaledger.relay.balance_poll import ChannelBalances
from quotaledger.relay.balances import OK, Watch
from quotaledger.relay.health import DISABLED, HealthBook
from quotaledger.relay.health import OK as HEALTHY
from quotaledger.settings import Secret, Settings
from quotaledger.store.database import Database

UPSTREAM_KEY = "sk-upstream-balance-test-key-0123456789"


class BalanceUpstream:
    """DeepSeek's `GET /user/balance` on loopback, with a balance the test sets."""

    def __init__(self) -> None:
        self.balance = "20.00"
        self.polls = 0
        self.keys: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                upstream.polls += 1
                upstream.keys.append(self.headers.get("Authorization", ""))
                body = json.dumps({"is_available": True, "balance_infos": [
                    {"currency": "USD", "total_balance": upstream.balance}]}).encode()  # fmt: skip
                self.send_response(200 if self.path == "/user/balance" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def upstream() -> Iterator[BalanceUpstream]:
    running = BalanceUpstream()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with running_inbox() as running:
        yield running


CIPHER = channels.ChannelCipher(Secret("a-secret-key-for-the-balance-tests-0001"))


@pytest.fixture
def channel(database: Database, upstream: BalanceUpstream) -> channels.Channel:
    spec = channels.ChannelSpec(
        "deep", upstream.url + "/v1", ("deepseek-chat",), Secret(UPSTREAM_KEY),
        format="openai-chat",
    )  # fmt: skip
    added = channels.add_channel(database, CIPHER, spec)
    balances.watch(database, added.id, "deepseek", base_url=upstream.url,
                   alert_usd=Decimal("5"), disable_at_zero=True)  # fmt: skip
    return added


def poller(
    database: Database, inbox: Inbox, clock: FakeClock, seen: list[Watch]
) -> ChannelBalances:
    """The poller as the server builds it: the client's provider, the monitor's rule and
    Apprise."""
    return ChannelBalances(
        database, CIPHER, fetch=edges.fetcher(timeout=2), level=edges.level,
        send=edges.sender([inbox.url]), clock=clock, on_balance=seen.append,
    )  # fmt: skip


async def test_the_balance_is_read_with_the_channels_key_and_stored(
    database: Database, channel: channels.Channel, upstream: BalanceUpstream, inbox: Inbox,
    clock: FakeClock,
) -> None:  # fmt: skip
    seen: list[Watch] = []
    found = await poller(database, inbox, clock, seen).check(channel.id)
    assert (found.amount, found.currency, found.level) == (Decimal("20.00"), "USD", OK)
    assert upstream.keys == [f"Bearer {UPSTREAM_KEY}"]
    assert seen[0].amount == Decimal("20.00")  # the gauge's value
    assert balances.get_watch(database, channel.id) == found
    assert inbox.received == []


async def test_one_alert_per_crossing_then_one_when_it_is_resolved(
    database: Database, channel: channels.Channel, upstream: BalanceUpstream, inbox: Inbox,
    clock: FakeClock,
) -> None:  # fmt: skip
    watcher = poller(database, inbox, clock, [])
    await watcher.check(channel.id)
    upstream.balance = "4.00"
    assert (await watcher.check(channel.id)).level == "WARNING"
    await watcher.check(channel.id)  # still low: no second alert
    upstream.balance = "5.20"  # above 5, within the recovery margin: still low
    await watcher.check(channel.id)
    upstream.balance = "9.00"
    assert (await watcher.check(channel.id)).level == OK
    titles = inbox.titles()
    assert titles == [
        "[quotaledger] WARNING: Channel deep upstream balance is running low",
        "[quotaledger] RESOLVED: Channel deep upstream balance is back above its alert level",
    ]
    assert (
        "upstream balance $4.00 (deepseek), at or below the alert level of 5"
        in (inbox.received[0]["message"])
    )
    assert UPSTREAM_KEY not in json.dumps(inbox.received)


async def test_an_undelivered_alert_is_sent_at_the_next_poll(
    database: Database, channel: channels.Channel, upstream: BalanceUpstream, inbox: Inbox,
    clock: FakeClock,
) -> None:  # fmt: skip
    watcher = poller(database, inbox, clock, [])
    upstream.balance = "1.00"
    inbox.fail_next = 1
    await watcher.check(channel.id)
    assert inbox.received == []
    found = await watcher.check(channel.id)
    assert (found.level, found.announced) == ("WARNING", "WARNING")
    assert len(inbox.received) == 1


async def test_an_empty_channel_is_disabled_and_enabled_again_when_refilled(
    database: Database, channel: channels.Channel, upstream: BalanceUpstream, inbox: Inbox,
    clock: FakeClock,
) -> None:  # fmt: skip
    watcher = poller(database, inbox, clock, [])
    upstream.balance = "0.00"
    await watcher.check(channel.id)
    health = HealthBook(database).get(channel.id)
    assert (health.state, health.cause, health.reason) == (
        DISABLED, "balance", "upstream balance 0.00 USD",
    )  # fmt: skip
    assert "The channel is disabled until it is refilled." in inbox.received[0]["message"]
    upstream.balance = "30.00"
    await watcher.check(channel.id)
    assert HealthBook(database).get(channel.id).state == HEALTHY
    assert channels.get_channel(database, "deep").status == "enabled"  # never the operator's


async def test_a_due_poll_is_made_by_one_instance_only(
    settings: Settings, database: Database, channel: channels.Channel,
    upstream: BalanceUpstream, inbox: Inbox, clock: FakeClock,
) -> None:  # fmt: skip
    other = Database.from_settings(settings)
    try:
        first, second = poller(database, inbox, clock, []), poller(other, inbox, clock, [])
        await first.run_once()
        await second.run_once()
        assert upstream.polls == 1
        clock.advance(900)  # QUOTALEDGER_CHANNEL_BALANCE_INTERVAL later
        await second.run_once()
        await first.run_once()
        assert upstream.polls == 2
    finally:
        other.dispose()


async def test_an_unreachable_balance_api_keeps_the_last_balance_and_says_why(
    database: Database, channel: channels.Channel, upstream: BalanceUpstream, inbox: Inbox,
    clock: FakeClock,
) -> None:  # fmt: skip
    watcher = poller(database, inbox, clock, [])
    await watcher.check(channel.id)
    upstream.server.shutdown()
    upstream.server.server_close()
    found = await watcher.check(channel.id)
    assert found.amount == Decimal("20.00")
    assert found.error and UPSTREAM_KEY not in found.error
