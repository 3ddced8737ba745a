"""What one client, or many large bodies, may hold of a server process (issue 26 item 2,
issue 25 item 5).

- `AddressGate`: requests in progress per client address (`QUOTALEDGER_MAX_REQUESTS_PER_
  ADDRESS`); one more is answered 429 at once, its body unread (the engine then closes the
  connection). With the body deadline (`bodies.read_body`, 408), an address sending bodies
  a byte at a time holds at most that many requests, each for at most the deadline.
- `BodyBudget`: bytes of large relay bodies being read or relayed at once
  (`QUOTALEDGER_RELAY_BODY_BYTES_IN_FLIGHT`); a body over the budget's room waits for it,
  within the same deadline (then 503), so ten 30 MB bodies cost what the budget allows,
  not 300 MB.

Both count per process (a Granian worker): one event loop, no lock needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from quotaledger.errors import Busy
from quotaledger.server.errors import HTTPError


class AddressGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: dict[str, int] = {}

    def holding(self, address: str) -> int:
        return self.held.get(address, 0)

    @contextmanager
    def enter(self, address: str) -> Iterator[None]:
        held = self.held.get(address, 0)
        if held >= self.limit:
            raise HTTPError(429, f"more than {self.limit} requests in progress from {address}")
        self.held[address] = held + 1
        try:
            yield
        finally:
            left = self.held[address] - 1
            if left:
                self.held[address] = left
            else:
                del self.held[address]


class BodyBudget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, size: int, within: float) -> AsyncIterator[None]:
        """Room for `size` bytes for the duration of the block; `Busy` (503) when it does not
        come `within` seconds."""
        size = min(size, self.capacity)
        async with self.changed:
            try:
                async with asyncio.timeout(within):
                    await self.changed.wait_for(lambda: self.used + size <= self.capacity)
            except TimeoutError:
                raise Busy("too many large request bodies at once: retry") from None
            self.used += size
        try:
            yield
        finally:
            async with self.changed:
                self.used -= size
                self.changed.notify_all()
