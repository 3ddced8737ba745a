"""The sweeper: settles reservations that no request will settle any more.

A relayed request settles its own reservation; one whose instance died (`kill -9`, a lost
database connection) leaves it open, holding the user's quota. Every instance runs this
loop; `settlement.sweep` settles each reservation idle past
`QUOTALEDGER_RELAY_RESERVATION_TTL` exactly once (to the usage recorded so far, else
released), however many instances sweep at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from quotaledger.billing import settlement
from quotaledger.settings import Settings
from quotaledger.store.database import Database

log = logging.getLogger("quotaledger.relay")

BATCH = 100
SettledHook = Callable[[settlement.Settlement], None]


def _ignore(settled: settlement.Settlement) -> None:
    pass


async def sweep_forever(
    database: Database, settings: Settings, on_settled: SettledHook = _ignore
) -> None:
    """Sweep every `QUOTALEDGER_RELAY_SWEEP_INTERVAL` seconds (with jitter, so that
    instances started together do not sweep together) until cancelled."""
    while True:
        await asyncio.sleep(settings.relay_sweep_interval * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
        try:
            await sweep_once(database, settings.relay_reservation_ttl, on_settled)
        except Exception:  # a database down now may be back at the next round
            log.exception("sweeping open reservations failed; trying again later")


async def sweep_once(database: Database, ttl: int, on_settled: SettledHook = _ignore) -> int:
    """Settle every reservation idle for `ttl` seconds; returns how many. Each settlement
    goes to `on_settled` (the alerts' check)."""
    total = 0
    while True:
        settled = await run_in_threadpool(settlement.sweep, database, ttl, limit=BATCH)
        total += len(settled)
        for each in settled:
            on_settled(each)
        if len(settled) < BATCH:
            break
    if total:
        log.warning("settled %d reservation(s) left open past %d s", total, ttl)
    return total
