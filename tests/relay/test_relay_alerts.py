"""Alerts end to end: real chats through `quotaledger serve` (one instance on SQLite, two on
PostgreSQL) settle, cross a threshold the user set through the API, and the server sends
one `json://` notification per crossing to a receiver on 127.0.0.1; a top-up followed by a
request sends one resolved message. The URL is in no log line and in no table in clear."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from relay_live import MESSAGES, MODEL, Customer, Relay, balance, customer, log_rows, relay_server
from sqlalchemy import select

from alert_inbox import SECRET_PATH, Inbox, running_inbox
from quotaledger.billing import ledger
from quotaledger.identity import accounts
from quotaledger.store.tables import metadata
from support import LiveServer, _empty_postgres

MARGIN = 250_000  # $0.50, the smallest recovery margin
# The inbox listens on loopback, which users' alerts may reach only when the operator says so.
INBOX_ALLOWED = {"QUOTALEDGER_ALERT_ALLOW_HOSTS": "127.0.0.1"}


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    yield from relay_server(tmp_path_factory, env=INBOX_ALLOWED)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str) -> Iterator[Relay]:
    """Two instances on one PostgreSQL database (skipped, saying so, without PostgreSQL)."""
    _empty_postgres(postgres_server_url)
    yield from relay_server(tmp_path_factory, postgres_server_url, instances=2, env=INBOX_ALLOWED)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with running_inbox() as running:
        yield running


def token_of(relay: Relay, who: Customer) -> dict[str, str]:
    with relay.database.read() as connection:
        account = accounts.get_account_in(connection, who.user_id)
    return {"Authorization": accounts.issue_token(relay.database, account, "password-123")}


def chat(server: LiveServer, who: Customer) -> None:
    answer = httpx.post(
        server.base_url + "/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {who.key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def usd(quota: int) -> str:
    return str(Decimal(quota) / 500_000)


def warn_below(relay: Relay, servers: list[LiveServer], who: Customer, inbox: Inbox) -> int:
    """One chat to learn its cost, then a warning threshold half a chat under the balance
    (set on every instance, so each holds it in memory at once) and the inbox's URL."""
    chat(servers[0], who)
    cost = int(log_rows(relay, who)[0]["quota"])
    threshold = balance(relay, who).quota - cost // 2
    headers = token_of(relay, who)
    for server in servers:
        answer = httpx.put(server.base_url + "/api/user/alerts",
                           json={"warn_usd": usd(threshold)}, headers=headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
    added = httpx.post(servers[0].base_url + "/api/user/alerts/urls", json={"url": inbox.url},
                       headers=headers)  # fmt: skip
    assert added.status_code == 200, added.text
    return threshold


def received(inbox: Inbox, count: int, timeout: float = 20.0) -> list[str]:
    """The titles received, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(inbox.received) < count:
        time.sleep(0.05)
    return inbox.titles()


def kinds(titles: list[str]) -> list[str]:
    return [title.split(":")[0] for title in titles]


def test_chats_crossing_a_threshold_send_one_alert_then_one_resolved(
    relay: Relay, inbox: Inbox
) -> None:
    who = customer(relay, quota=2_000_000)
    warn_below(relay, relay.servers, who, inbox)
    chat(relay.server, who)  # crosses
    assert kinds(received(inbox, 1)) == ["WARNING"]
    chat(relay.server, who)  # still below: nothing more
    ledger.top_up(relay.database, _username(relay, who), 2 * MARGIN)
    chat(relay.server, who)  # the next settlement finds the recovery
    assert kinds(received(inbox, 2)) == ["WARNING", "RESOLVED"]
    assert SECRET_PATH not in relay.server.log()
    with relay.database.read() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                assert SECRET_PATH not in str(row), table.name


@pytest.mark.postgres
def test_two_instances_send_one_alert_per_crossing(pair: Relay, inbox: Inbox) -> None:
    who = customer(pair, quota=2_000_000)
    warn_below(pair, pair.servers, who, inbox)
    for server in pair.servers:  # both instances settle below the threshold
        chat(server, who)
    assert kinds(received(inbox, 1)) == ["WARNING"]
    ledger.top_up(pair.database, _username(pair, who), 2 * MARGIN)
    for server in pair.servers:
        chat(server, who)
    assert kinds(received(inbox, 2)) == ["WARNING", "RESOLVED"]


def _username(relay: Relay, who: Customer) -> str:
    return balance(relay, who).username
