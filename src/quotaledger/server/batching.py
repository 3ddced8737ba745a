"""Group commit for usage charges.

Charges that arrive while a batch is being committed wait in a queue and go together into
the next transaction (`ledger.charge_batch`): one durable commit for many charges. Each
caller is answered only after the transaction holding its charge has committed, so an
acknowledged charge is as durable as with one transaction per charge (`synchronous=FULL`).
Under no load a batch holds one charge and nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from quotaledger import ledger
from quotaledger.errors import QuotaLedgerError
from quotaledger.store.database import Database, is_busy

log = logging.getLogger("quotaledger.ledger")

MAX_BATCH = 256


@dataclass
class _Pending:
    request: ledger.UsageRequest
    future: asyncio.Future[ledger.ChargeOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ChargeBatcher:
    def __init__(self, database: Database, max_batch: int = MAX_BATCH) -> None:
        self.database = database
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def charge(self, request: ledger.UsageRequest) -> ledger.Charge:
        """Charge one request; raises the domain error if it was refused."""
        pending = _Pending(request)
        self._ensure_worker().put_nowait(pending)
        outcome = await pending.future
        if isinstance(outcome, QuotaLedgerError):
            raise outcome
        return outcome

    def _ensure_worker(self) -> asyncio.Queue[_Pending]:
        # Started lazily, in the loop that serves requests.
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue))
        return self._queue

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        requests = [p.request for p in batch]
        outcomes: list[ledger.ChargeOutcome | Exception]
        try:
            outcomes = list(await run_in_threadpool(ledger.charge_batch, self.database, requests))
        except Exception as exc:
            # The batch's transaction failed as a whole: nothing of it committed.
            if is_busy(exc):  # the lock stays taken: retrying each alone would wait again
                outcomes = [exc] * len(batch)
            else:  # a deadlock, a lost connection: retry each charge alone
                log.warning(
                    "charge batch of %d failed (%s); retrying one by one",
                    len(batch),
                    type(exc).__name__,
                )
                outcomes = [await self._charge_alone(p.request) for p in batch]
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.future.done():
                if isinstance(outcome, BaseException) and not isinstance(outcome, QuotaLedgerError):
                    pending.future.set_exception(outcome)
                else:
                    pending.future.set_result(outcome)

    async def _charge_alone(self, request: ledger.UsageRequest) -> ledger.ChargeOutcome | Exception:
        try:
            return (await run_in_threadpool(ledger.charge_batch, self.database, [request]))[0]
        except Exception as exc:
            return exc

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
