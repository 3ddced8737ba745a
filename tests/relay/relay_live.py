"""A live relay for the relay's end-to-end tests: `quotaledger serve` on a SQLite file in
front of the example fake upstream, with OpenAI channels (primary, and secondary for
failover) and an Anthropic one, and priced models:

    gpt-test     2 USD in, 8 USD out per million tokens: input + 4 x output quota
                 (cache reads 0.2 USD: 0.1 quota each)
    embed-test   1 USD in: half a quota per token
    claude-test  3 USD in, 15 USD out, Anthropic's cache ratios (0.1x, 1.25x, 2x)
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from wire_support import load_fake_upstream

from quotaledger.billing import audit, ledger, pricing
from quotaledger.identity import accounts, keys
from quotaledger.identity.bootstrap import prepare_database
from quotaledger.identity.keys import KeyLimits
from quotaledger.relay import channels
from quotaledger.relay import rates as stored_rates
from quotaledger.relay.limits import Rates
from quotaledger.secret import Secret
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.store.tables import usage
from support import LiveServer, free_port, start_server, stop_server

MODEL = "gpt-test"
CLAUDE = "claude-test"
SECRET_KEY = "relay-tests-secret-key-of-enough-length"
UPSTREAM_KEY = "sk-upstream-never-shown-0123456789"
ANSWER = "Hello from the fake upstream! How can I help?"
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]
_names = itertools.count()


@dataclass
class Relay:
    servers: list[LiveServer]  # one or more instances on one database
    upstream: Any  # the fake upstream's state: script(), requests, cancellations
    database: Database
    tmp: Path
    env: dict[str, str]

    @property
    def server(self) -> LiveServer:
        return self.servers[0]

    @property
    def v1(self) -> str:
        return self.server.base_url + "/v1"

    def start_instance(self) -> LiveServer:
        """One more `serve` process on the same database."""
        server = start_server(self.database.url, self.tmp, self.env)
        self.servers.append(server)
        return server


def relay_server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None = None,
    *,
    instances: int = 1,
    env: dict[str, str] | None = None,
    formats: bool = False,
) -> Iterator[Relay]:
    """Start a relay (see the module's docstring) on `database_url` (a new SQLite file by
    default; an empty PostgreSQL database otherwise), with `instances` serve processes; a
    module-scoped fixture yields it. With `formats`, one more channel of each format serves a
    model of its own (`FORMAT_MODELS`), for the conversion tests."""
    tmp = tmp_path_factory.mktemp("relay")
    url = database_url or f"sqlite:///{tmp / 'relay.db'}"
    env = {
        "QUOTALEDGER_SECRET_KEY": SECRET_KEY,
        "UPSTREAM_KEY": UPSTREAM_KEY,
        # A module's tests share its channels and script failures on them one after the
        # other: health must not cool them for the next test (test_relay_health_live.py
        # tests the default).
        "QUOTALEDGER_CHANNEL_FAILURES_TO_COOL": "1000",
        **(env or {}),
    }
    # Migrated and priced in this process: the CLI doing the same is tested in tests/cli
    # (each `quotaledger` subprocess costs ~0.7 s, times every live module).
    database = prepare_database(Settings.from_env({}, database_url=url))
    _price(database, MODEL, "2", "8", cache_read_usd_per_mtok="0.2")
    _price(database, CLAUDE, "3", "15")
    _price(database, "embed-test", "1", "0")
    with load_fake_upstream().serve_in_thread() as running:
        cipher = channels.ChannelCipher(Secret(SECRET_KEY))
        for name, priority in (("primary", 10), ("secondary", 0)):
            spec = channels.ChannelSpec(
                name, running.base_url, (MODEL, "embed-test"), Secret(UPSTREAM_KEY),
                priority=priority,
            )  # fmt: skip
            channels.add_channel(database, cipher, spec)
        claude = channels.ChannelSpec(
            "claude", running.base_url, (CLAUDE,), Secret(UPSTREAM_KEY), format="anthropic"
        )
        channels.add_channel(database, cipher, claude)
        if formats:
            _add_format_channels(database, cipher, running.base_url)
        relay = Relay([], running.upstream, database, tmp, env)
        try:
            for _ in range(instances):
                relay.start_instance()
            yield relay
        finally:
            for server in relay.servers:
                stop_server(server)
            database.dispose()


# One model per channel format, served only by a channel of that format, priced alike:
# 1 USD in, 2 USD out per million tokens (half a quota per input token, 1 per output token).
FORMAT_MODELS = {
    "openai": "via-openai",
    "openai-chat": "via-openai-chat",
    "anthropic": "via-anthropic",
    "gemini": "via-gemini",
}


def _add_format_channels(database: Database, cipher: Any, base_url: str) -> None:
    for channel_format, model in FORMAT_MODELS.items():
        _price(database, model, "1", "2", cache_read_usd_per_mtok="0.1",
               cache_write_usd_per_mtok="1.25")  # fmt: skip
        root = base_url + ("/v1beta" if channel_format == "gemini" else "/v1")
        spec = channels.ChannelSpec(
            f"ch-{channel_format}", root, (model,), Secret(UPSTREAM_KEY), format=channel_format
        )
        channels.add_channel(database, cipher, spec)


@contextlib.contextmanager
def chat_stream(relay: Relay, who: Customer) -> Iterator[httpx.Response]:
    """A streamed chat completion by `who`, open until the block ends (its answer's head has
    arrived; read it with `iter_raw()`, and keep that iterator while the stream should live:
    dropping it closes the connection)."""
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            relay.v1 + "/chat/completions",
            json={"model": MODEL, "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {who.key}"},
        ) as answer,
    ):
        yield answer


_sdk_clients: list[Any] = []
SDK = TypeVar("SDK")


def sdk_client(client: SDK) -> SDK:
    """`client` (an official SDK's), closed after the test (tests/relay/conftest.py)."""
    _sdk_clients.append(client)
    return client


def close_sdk_clients() -> None:
    while _sdk_clients:
        _sdk_clients.pop().close()


def _price(database: Database, model: str, input_usd: str, output_usd: str, **extras: str) -> None:
    pricing.set_price(
        database,
        pricing.make_price(
            model, input_usd_per_mtok=input_usd, output_usd_per_mtok=output_usd, **extras
        ),
    )


@dataclass
class Customer:
    user_id: int
    key_id: int
    key: str


def customer(
    relay: Relay, quota: int = 5_000_000, *, rates: Rates | None = None, **limits: Any
) -> Customer:
    """A new account with `quota` and one key (its `KeyLimits` from `limits`, its rate
    limits `rates`)."""
    name = f"relay-user-{next(_names)}"
    account = accounts.create_account(relay.database, name, "password-123")
    if quota:
        ledger.top_up(relay.database, name, quota)
    key, raw = keys.create_key(relay.database, account.id, "laptop", KeyLimits(**limits))
    if rates is not None:
        stored_rates.set_key_rates(relay.database, key.id, rates)
    return Customer(account.id, key.id, raw)


def balance(relay: Relay, who: Customer) -> accounts.Account:
    with relay.database.read() as connection:
        return accounts.get_account_in(connection, who.user_id)


def log_rows(relay: Relay, who: Customer) -> list[Any]:
    with relay.database.read() as connection:
        return list(
            connection.execute(usage.select().where(usage.c.user_id == who.user_id)).mappings()
        )


def settled(relay: Relay, who: Customer, rows: int, timeout: float = 10.0) -> list[Any]:
    """The user's log rows once there are `rows` of them (a stream settles as it ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = log_rows(relay, who)
        if len(found) >= rows:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {rows} log rows, found {len(log_rows(relay, who))}")


def consistent(relay: Relay) -> None:
    assert audit.check_invariant(relay.database) == []


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of this test's own on a free port (never the machine's shared one)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        wait_for(lambda: _pings(client), 10, "redis")
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.kill()
        process.wait()


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
