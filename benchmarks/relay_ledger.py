"""In-process cost of the relay's ledger path: admit, reserve and settle of one request,
on SQLite (synchronous FULL and NORMAL) and PostgreSQL, one thread, no HTTP. Not a test:
nothing asserts a time.

    PYTHONPATH=src .venv/bin/python benchmarks/relay_ledger.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

from quotaledger.billing import ledger, pricing
from quotaledger.billing.reservations import reserve
from quotaledger.billing.settlement import Outcome, settle
from quotaledger.identity import accounts, keys
from quotaledger.store.database import Database
from quotaledger.store.migrate import upgrade
from quotaledger.token_usage import TokenUsage

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def _prepare(database: Database) -> tuple[str, int, int]:
    upgrade(database)
    pricing.set_price(database, pricing.make_price("m", input_usd_per_mtok="2",
                                                   output_usd_per_mtok="8"))  # fmt: skip
    name = f"bench{uuid.uuid4().hex[:8]}"
    account = accounts.create_account(database, name, "password-123")
    ledger.top_up(database, name, 10**15)
    key, raw = keys.create_key(database, account.id, "k", keys.KeyLimits(quota=10**14))
    return keys.key_digest(raw), account.id, key.id


def _time(requests: int, step: Callable[[int], None]) -> float:
    samples = []
    for i in range(requests):
        started = time.perf_counter()
        step(i)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def measure(label: str, database: Database, requests: int) -> None:
    digest, user_id, key_id = _prepare(database)
    run = uuid.uuid4().hex[:8]
    offered = frozenset({"m"})
    admit_us = _time(requests, lambda i: keys.admit(database, digest, "127.0.0.1", "m", offered))
    loop = asyncio.new_event_loop()
    inline_us = _time(requests, lambda i: loop.run_until_complete(
        keys.admit_async(database, digest, "127.0.0.1", "m", offered)))  # fmt: skip
    loop.close()
    reserve_us = _time(requests, lambda i: reserve(
        database, f"{run}-{i}", user_id=user_id, key_id=key_id, model="m", group="default",
        amount=40_000, minimum=1_000))  # fmt: skip
    outcome = Outcome(200, TokenUsage(input=1000, output=300), end_reason="stop")
    settle_us = _time(requests, lambda i: settle(database, f"{run}-{i}", user_id, outcome))
    print(
        f"{label:<22} admit {admit_us:5.0f} µs (on the loop {inline_us:3.0f})   "
        f"reserve {reserve_us:5.0f} µs   settle {settle_us:5.0f} µs   (medians of {requests})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for synchronous in ("FULL", "NORMAL"):
            database = Database(f"sqlite:///{directory}/{synchronous}.db",
                                sqlite_synchronous=synchronous)  # fmt: skip
            measure(f"SQLite {synchronous}", database, args.requests)
            database.dispose()
    try:
        import psycopg

        name = f"quotaledger_bench_{uuid.uuid4().hex[:8]}"  # a database of its own, dropped
        with psycopg.connect(POSTGRES + "/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"PostgreSQL skipped: {type(exc).__name__}: {exc}")
        return
    try:
        database = Database(f"postgresql+psycopg://{POSTGRES.split('://')[1]}/{name}")
        measure("PostgreSQL (loopback)", database, args.requests)
        database.dispose()
    finally:
        with psycopg.connect(POSTGRES + "/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
