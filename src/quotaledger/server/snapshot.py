"""`PassSnapshot`: the token lookups of one pass of the event loop share one SQLite read
transaction.

On SQLite every token lookup runs on the event loop (`Database.inline_reader`). In WAL
mode a read transaction costs more than the lookup itself (two `fcntl` locks on the
shared-memory index and an `fstat`: ~2.3 µs of a 3.5 µs lookup), and outside a transaction
each statement opens and closes its own. Under load one pass of the loop answers many
requests; `enter()` opens a read transaction at the first lookup of a pass and schedules its
end (`call_soon`) right away, so every lookup until then shares it.

Why every request still reads a state at least as new as itself (linearizable, as
required of balances and of replaced tokens on every instance): a request's task is
scheduled (`call_soon`, first in first out) when its bytes are read, and the end of the
transaction is scheduled when it begins. A lookup made before the end runs in a step
scheduled before it, so by a request that had arrived before the transaction began; a
request that arrives later runs after the end, in a new transaction that sees everything
committed before it arrived. This holds for asyncio's loops and uvloop as uvicorn runs
them: one loop per reader (each worker process opens its own), and tasks that start at
their first scheduled step (not "eager" tasks, which would run inside the I/O callback).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

log = logging.getLogger("quotaledger.server")


class PassSnapshot:
    def __init__(self, reader: sqlite3.Connection) -> None:
        self.reader = reader
        self._end_pending = False

    def enter(self) -> None:
        """Make sure the reader is inside this pass's read transaction."""
        if self._end_pending:
            return
        # Scheduled before BEGIN: a transaction is never left open without its end.
        asyncio.get_running_loop().call_soon(self._end)
        self._end_pending = True
        if self.reader.in_transaction:  # left over (an end that failed): never reuse it
            self.reader.rollback()
        self.reader.execute("BEGIN")  # deferred: the snapshot is taken by the first read

    def _end(self) -> None:
        self._end_pending = False
        try:
            if self.reader.in_transaction:
                self.reader.execute("COMMIT")
        except sqlite3.Error:  # nothing was written: dropping the snapshot is all there is
            log.debug("ending a read snapshot failed", exc_info=True)
            self.reader.rollback()
