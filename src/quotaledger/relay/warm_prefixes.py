"""Which prompt prefixes the upstreams hold in their caches, as far as this process has seen
(SPEC §8b): a prefix is warm once an answer's usage reported cache reads or writes for a
request that marked it, until its cache lifetime passes without another such answer.

A reservation prices a warm prefix at the cache-read rate (`billing.sizing`). A guess that
turns out wrong (the upstream evicted it early, or another instance never saw it) costs the
relay at most the difference on that one call: the charge is still the real usage, taken as
far as the balance goes and the rest written off, so no balance goes below zero. Kept per
process and bounded: a miss only means the larger reservation of a cold cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from quotaledger.token_usage import TokenUsage
from quotaledger.wire.cache_prefixes import Breakpoint


class WarmPrefixes:
    def __init__(self, capacity: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._until: OrderedDict[bytes, float] = OrderedDict()
        self._capacity = capacity
        self._clock = clock

    def warm_tokens(self, breakpoints: Sequence[Breakpoint], prompt_tokens: int) -> int:
        """Tokens of `prompt_tokens` expected to be read from the cache: the longest warm
        prefix's share of the estimate."""
        now = self._clock()
        for point in sorted(breakpoints, key=lambda p: p.prefix_bytes, reverse=True):
            if self._until.get(point.digest, 0.0) > now:
                return min(prompt_tokens, point.tokens(prompt_tokens))
        return 0

    def answered(self, breakpoints: Sequence[Breakpoint], usage: TokenUsage | None) -> None:
        """An answer came: every prefix it marked is now cached upstream if it says so."""
        if not breakpoints or usage is None:
            return
        if not (usage.cache_read or usage.cache_write_5m or usage.cache_write_1h):
            return
        now = self._clock()
        for point in breakpoints:
            if not point.marked:
                continue
            self._until[point.digest] = now + point.ttl
            self._until.move_to_end(point.digest)
        while len(self._until) > self._capacity:
            self._until.popitem(last=False)
