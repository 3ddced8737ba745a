"""When to try again, and how long to wait: network errors and 5xx only, with backoff
and jitter so that many clients failing together do not retry together."""

from __future__ import annotations

import random
from dataclasses import dataclass

from quotaledger.client.exchange import Reply

DEFAULT_BACKOFF = 0.5
"""Seconds before the first retry (on average 3/4 of it); doubles per retry."""
MAX_BACKOFF = 8.0


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    backoff: float = DEFAULT_BACKOFF

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def should_retry(self, reply: Reply) -> bool:
        """A server error may pass; any other answer, 429 included, is final."""
        return reply.status >= 500

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): equal jitter."""
        ceiling: float = min(MAX_BACKOFF, self.backoff * 2.0 ** (attempt - 1))
        # Not for security: spreading retries needs no cryptographic randomness.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311
