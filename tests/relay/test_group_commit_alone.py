"""A relayed request alone in its process (`Database.group_commit(alone=True)`): on SQLite
its reservation and settlement commit right on the event loop, with the same outcome and
durability as through the group-commit thread, and never wait for a write lock held
elsewhere on the loop (they fall back to the thread, and the loop keeps serving)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest
from relay_support import MODEL, funded, price_model
from relay_support import balance as quota_of
from sqlalchemy import event

from quotaledger.billing import audit
from quotaledger.billing.reservations import ReserveRequest, reserve_async
from quotaledger.billing.settlement import Outcome, settle_async
from quotaledger.store.database import Database
from quotaledger.token_usage import TokenUsage

ANSWERED = Outcome(status=200, usage=TokenUsage(input=100, output=0))


def _record_begins(database: Database) -> list[tuple[int, int]]:
    """(thread, busy_timeout) of every write transaction begun from now on (SQLite): the
    statements of connections checked out from now on, traced."""
    begins: list[tuple[int, int]] = []
    if not database.is_sqlite:
        return begins
    timeouts: dict[int, int] = {}

    def trace(statement: str) -> None:
        thread = threading.get_ident()
        if statement.startswith("PRAGMA busy_timeout = "):
            timeouts[thread] = int(statement.rsplit(" ", 1)[1])
        elif statement == "BEGIN IMMEDIATE":
            begins.append((thread, timeouts.get(thread, -1)))

    def on_checkout(driver: Any, *_: Any) -> None:
        driver.set_trace_callback(trace)

    event.listen(database.engine, "checkout", on_checkout)
    return begins


def _ask(user_id: int, key_id: int, request_id: str) -> ReserveRequest:
    return ReserveRequest(request_id, user_id, key_id, MODEL, "default", 1_000, 1_000)


def test_a_lone_request_reserves_and_settles_exactly_once(database: Database) -> None:
    price_model(database)
    who = funded(database, 10_000)
    begins = _record_begins(database)
    loop_thread = threading.get_ident()

    async def lone() -> tuple[int, int, bool]:
        reserved = await reserve_async(database, _ask(who.user_id, who.key.id, "r1"), alone=True)
        held = quota_of(database, who)  # read on another connection: committed already
        settled = await settle_async(database, "r1", who.user_id, ANSWERED, alone=True)
        again = await settle_async(database, "r1", who.user_id, ANSWERED, alone=True)
        await database.close_group_commits()
        assert reserved.amount == 1_000 and settled.charged == 100
        return held, settled.quota_remaining, again.replayed

    assert asyncio.run(lone()) == (9_000, 9_900, True)
    if database.is_sqlite:  # committed on the event loop's own thread, without waiting
        assert [thread for thread, _ in begins[:3]] == [loop_thread] * 3
        assert {timeout for _, timeout in begins[:3]} == {0}
    assert quota_of(database, who) == 9_900
    assert audit.check_invariant(database) == []


def test_a_lone_write_never_waits_for_the_lock_on_the_event_loop(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("PostgreSQL always writes in the group-commit thread")
    price_model(database)
    who = funded(database, 10_000)
    begins = _record_begins(database)
    loop_thread = threading.get_ident()
    path = database.engine.url.database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds SQLite's one write lock

    async def while_locked() -> tuple[int, int]:
        task = asyncio.ensure_future(
            reserve_async(database, _ask(who.user_id, who.key.id, "r2"), alone=True)
        )
        turns = 0
        while turns < 20:  # the loop keeps turning: the write waits in the thread
            await asyncio.sleep(0)
            turns += 1
        assert not task.done()
        holder.execute("COMMIT")
        reserved = await task
        await database.close_group_commits()
        return turns, reserved.amount

    try:
        assert asyncio.run(while_locked()) == (20, 1_000)
    finally:
        holder.close()
    # One attempt on the loop, refused at once (busy_timeout 0); the write in the thread.
    tried, done = begins[0], begins[-1]
    assert tried == (loop_thread, 0)
    assert done[0] != loop_thread and done[1] != 0  # the thread waits as configured
    assert quota_of(database, who) == 9_000
    assert audit.check_invariant(database) == []
