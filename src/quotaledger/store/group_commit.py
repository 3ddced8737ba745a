"""`GroupCommit`: writes that arrive while a batch is being committed wait in a queue and go
together into the next transaction: one durable commit for many writes.

Each caller is answered only after the transaction holding its write has committed, so an
acknowledged write is as durable as with one transaction per write (`synchronous=FULL` on
SQLite). Under no load a batch holds one item and nothing waits. The batch function runs
in a worker thread and returns one outcome per item, in order; a refusal is an outcome (it
writes nothing and the others still commit), an exception fails the whole batch, which is
then retried one item at a time (unless SQLite's lock stayed taken: `DatabaseBusy`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from quotaledger.errors import DatabaseBusy

if TYPE_CHECKING:
    from quotaledger.store.database import Database

log = logging.getLogger("quotaledger.store")

MAX_BATCH = 256
BUSY = "the database is busy: retry in a moment"

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
BatchFunction = Callable[["Database", list[Item]], list[Outcome]]


def apply_in_order(
    database: Database,
    items: Sequence[Item],
    *,
    order: Callable[[Item], tuple[Any, ...]],
    apply: Callable[[Any, Item], Outcome],
    refusals: tuple[type[Exception], ...],
) -> list[Outcome | Exception]:
    """`apply(connection, item)` for every item in ONE write transaction (a batch function
    for `GroupCommit`), taken in `order` (e.g. by user, so that batches of several instances
    lock rows in one order and cannot deadlock). An exception of the `refusals` kinds is that
    item's outcome (it must have written nothing); any other fails the whole batch. The
    outcomes come back in the order of `items`."""
    outcomes: dict[int, Outcome | Exception] = {}
    with database.write() as connection:
        for index in sorted(range(len(items)), key=lambda i: order(items[i])):
            try:
                outcomes[index] = apply(connection, items[index])
            except refusals as refused:
                outcomes[index] = refused
    return [outcomes[i] for i in range(len(items))]


class BatchItem(Protocol):
    """A write that knows how to apply itself inside a batch's transaction: `apply_items`
    batches writes of different kinds (the relay's reservations and settlements) in ONE
    transaction, one commit for both."""

    refusals: ClassVar[tuple[type[Exception], ...]]  # raised before it writes anything

    def order_key(self) -> tuple[Any, ...]: ...

    def apply_in(self, connection: Any, now: int) -> Any: ...


def apply_items(database: Database, items: Sequence[BatchItem]) -> list[Any]:
    """A batch function for `GroupCommit`: every item's `apply_in` in ONE write transaction,
    in `order_key` order (by user first, so that batches of several instances lock rows in
    one order and cannot deadlock); an item's own `refusals` are its outcome."""
    outcomes: dict[int, Any] = {}
    now = int(time.time())
    with database.batch_write() as connection:
        for index in sorted(range(len(items)), key=lambda i: items[i].order_key()):
            item = items[index]
            try:
                outcomes[index] = item.apply_in(connection, now)
            except item.refusals as refused:
                outcomes[index] = refused
    return [outcomes[i] for i in range(len(items))]


@dataclass
class _Pending(Generic[Item, Outcome]):
    item: Item
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit(Generic[Item, Outcome]):
    def __init__(
        self,
        database: Database,
        apply: BatchFunction[Item, Outcome],
        is_busy: Callable[[BaseException], bool],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.database = database
        self.apply = apply
        self.is_busy = is_busy
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending[Item, Outcome]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._committing = False  # a batch is in the worker thread

    def try_inline(self, item: Item) -> tuple[bool, Outcome | None]:
        """Commit `item` alone right here, on the event loop, when nothing is queued or
        being committed: no hop to the thread and back (~0.1 ms each way), for a caller
        that knows nothing else waits on the loop. (False, None) when it did not run:
        something is queued or committing, or the write lock is taken (the caller then
        submits as usual); an error of the write itself is raised."""
        if self._committing or (self._queue is not None and not self._queue.empty()):
            return False, None
        try:
            return True, self.apply(self.database, [item])[0]
        except Exception as exc:
            if self.is_busy(exc):
                return False, None
            raise

    async def submit(self, item: Item) -> Outcome:
        """`item`'s outcome, once the transaction that holds it has committed; raises
        `DatabaseBusy` when SQLite's lock stayed taken (nothing was written)."""
        pending: _Pending[Item, Outcome] = _Pending(item)
        self._ensure_worker().put_nowait(pending)
        return await pending.future

    def _ensure_worker(self) -> asyncio.Queue[_Pending[Item, Outcome]]:
        # Started lazily, in the loop that serves requests (a new loop gets a new worker).
        loop = asyncio.get_running_loop()
        if (
            self._queue is None
            or self._worker is None
            or self._worker.done()
            or (self._loop is not loop)
        ):
            self._queue, self._loop = asyncio.Queue(), loop
            # A thread of its own: batches commit one after another anyway, and handing one
            # to a dedicated thread costs a fraction of a trip through a shared pool.
            self._thread = self._thread or ThreadPoolExecutor(1, "group-commit")
            self._worker = loop.create_task(self._run(self._queue))
        return self._queue

    async def _run(self, queue: asyncio.Queue[_Pending[Item, Outcome]]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending[Item, Outcome]]) -> None:
        self._committing = True
        try:
            await self._commit_batch(batch)
        finally:
            self._committing = False

    async def _commit_batch(self, batch: list[_Pending[Item, Outcome]]) -> None:
        try:
            items = [p.item for p in batch]
            outcomes = await self._in_thread(items)
        except Exception as exc:
            # The batch's transaction failed as a whole: nothing of it committed.
            if self.is_busy(exc):  # the lock stays taken: retrying each alone would wait again
                for pending in batch:
                    _fail(pending, DatabaseBusy(BUSY))
                return
            # A deadlock, a lost connection: retry each alone.
            log.warning(
                "batch of %d failed (%s); retrying one by one", len(batch), type(exc).__name__
            )
            for pending in batch:
                await self._alone(pending)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            _answer(pending, outcome)

    async def _alone(self, pending: _Pending[Item, Outcome]) -> None:
        try:
            outcome = await self._in_thread([pending.item])
        except Exception as exc:
            _fail(pending, DatabaseBusy(BUSY) if self.is_busy(exc) else exc)
        else:
            _answer(pending, outcome[0])

    async def _in_thread(self, items: list[Item]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.apply, self.database, items)

    async def close(self) -> None:
        """Stop the worker, once the batch being committed (if any) is done."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._thread is not None:
            thread, self._thread = self._thread, None
            await asyncio.get_running_loop().run_in_executor(None, thread.shutdown)


def _answer(pending: _Pending[Item, Outcome], outcome: Outcome) -> None:
    if not pending.future.done():  # else its caller went away
        pending.future.set_result(outcome)


def _fail(pending: _Pending[Item, Outcome], error: BaseException) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
