"""In-process cost of new-api's log reads (SPEC §9) on a large usage table: one page of
`/api/log/self` (newest, and filtered by key and time), `/api/log/self/stat` and 30 days of
`/api/data/self`, on SQLite, with migration 0003's `usage(user_id, created_at)` index and
without it. Not a test: nothing asserts a time.

    PYTHONPATH=src .venv/bin/python benchmarks/usage_log_queries.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable

from sqlalchemy import insert, text

from quotaledger.billing import usage_log
from quotaledger.identity import accounts
from quotaledger.store.database import Database
from quotaledger.store.migrate import upgrade
from quotaledger.store.tables import usage

DAY = 86_400


def _load(database: Database, rows: int, now: int) -> int:
    """`rows` log rows over 90 days, a tenth of them the measured user's, 3 keys, 4 models."""
    upgrade(database)
    ids = [accounts.create_account(database, f"u{i}", "password-123").id for i in range(10)]
    rng = random.Random(7)
    batch = []
    for n in range(rows):
        batch.append({
            "user_id": ids[n % 10], "request_id": f"r{n}", "model": f"m{n % 4}",
            "prompt_tokens": 100, "completion_tokens": 50, "quota": 300, "quota_after": 0,
            "created_at": now - rng.randrange(90 * DAY), "key_name": f"k{n % 3}",
            "status": 200 if n % 20 else 502,
        })  # fmt: skip
        if len(batch) == 5_000:
            with database.write() as connection:
                connection.execute(insert(usage), batch)
            batch = []
    if batch:
        with database.write() as connection:
            connection.execute(insert(usage), batch)
    return ids[0]


def _median_ms(step: Callable[[], object], repeat: int = 30) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _cases(database: Database, user_id: int, now: int) -> dict[str, Callable[[], object]]:
    week = usage_log.LogFilter(start_timestamp=now - 7 * DAY, token_name="k1")
    return {
        "log page 1": lambda: usage_log.log_page(database, user_id, usage_log.LogFilter(), 1, 20),
        "log page, key + last 7 days": lambda: usage_log.log_page(database, user_id, week, 1, 20),
        "stat, key + last 7 days": lambda: usage_log.log_stat(database, user_id, week, now),
        "data/self, 30 days": lambda: usage_log.hourly_usage(
            database, user_id, now - 30 * DAY, now
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    rows = parser.parse_args().rows
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{tmp}/log.db")
        user_id = _load(database, rows, now)
        with_index = {n: _median_ms(s) for n, s in _cases(database, user_id, now).items()}
        with database.write() as connection:
            connection.execute(text("DROP INDEX usage_user_created"))
        without = {n: _median_ms(s) for n, s in _cases(database, user_id, now).items()}
        database.dispose()
    print(f"{rows:,} log rows, {rows // 10:,} of them the user's; median ms (SQLite)")
    print(f"{'query':32} {'with index':>11} {'without':>9}")
    for name in with_index:
        print(f"{name:32} {with_index[name]:11.2f} {without[name]:9.2f}")


if __name__ == "__main__":
    main()
