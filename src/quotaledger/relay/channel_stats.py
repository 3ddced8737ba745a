"""Per-channel request stats for `channel list` (SPEC §12): success rate and p50 latency
over the last hour, the same on every instance.

The record is compact: per channel and minute, answered requests counted by latency bucket
(4 per doubling: `bucket_of`, so a p50 is within ±9 %) and failures in bucket -1. Each
instance tallies in memory and adds its tallies to `channel_minutes` every few seconds
(`flush`: one upsert per row that changed, rows older than two hours deleted); a busy
channel-minute is ~15 rows.
"""

from __future__ import annotations

import math
import time
from collections import Counter as Tally
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from quotaledger.store.database import Database
from quotaledger.store.tables import channel_health, channel_minutes

FAILED = -1
_KEEP_MINUTES = 120


def bucket_of(latency_ms: float) -> int:
    return int(4 * math.log2(max(latency_ms, 1.0)))


def bucket_ms(bucket: int) -> int:
    """The middle of a bucket, in ms."""
    return round(2 ** ((bucket + 0.5) / 4))


@dataclass(frozen=True)
class Summary:
    requests: int
    success_rate: float | None  # None: no request in the hour
    p50_ms: int | None


class StatsRecorder:
    """Tallies of this instance, waiting for `flush`."""

    def __init__(self) -> None:
        self._tally: Tally[tuple[int, int, int]] = Tally()
        self._last_success: dict[int, int] = {}

    def answered(self, channel_id: int, latency_ms: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._tally[channel_id, int(now // 60), bucket_of(latency_ms)] += 1
        self._last_success[channel_id] = int(now * 1000)

    def failed(self, channel_id: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._tally[channel_id, int(now // 60), FAILED] += 1

    def flush(self, database: Database, now: float | None = None) -> None:
        """Add the tallies to the shared record (and the last successes to the health rows)."""
        now = time.time() if now is None else now
        tally, self._tally = self._tally, Tally()
        successes, self._last_success = self._last_success, {}
        if not tally:  # nothing answered here since the last flush: no write at all
            return
        with database.write() as connection:
            for (channel_id, minute, bucket), count in tally.items():
                connection.execute(_upsert(database, channel_id, minute, bucket, count))
            for channel_id, at in successes.items():
                connection.execute(_last_success(database, channel_id, at))
            oldest = int(now // 60) - _KEEP_MINUTES
            connection.execute(delete(channel_minutes).where(channel_minutes.c.minute < oldest))


def _upsert(database: Database, channel_id: int, minute: int, bucket: int, count: int) -> Any:
    dialect = sqlite if database.engine.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(channel_minutes).values(
        channel_id=channel_id, minute=minute, bucket=bucket, requests=count
    )
    return statement.on_conflict_do_update(
        index_elements=["channel_id", "minute", "bucket"],
        set_={"requests": channel_minutes.c.requests + statement.excluded.requests},
    )


def _last_success(database: Database, channel_id: int, at: int) -> Any:
    # A channel that never failed has no health row yet: its first success makes one.
    dialect = sqlite if database.engine.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(channel_health).values(
        channel_id=channel_id, last_success_at=at, version=1
    )
    return statement.on_conflict_do_update(
        index_elements=["channel_id"],
        set_={"last_success_at": at, "version": channel_health.c.version + 1},
        where=func.coalesce(channel_health.c.last_success_at, 0) < at,
    )


def summaries(database: Database, now: float | None = None) -> dict[int, Summary]:
    """Every channel's last hour (the current minute and the 59 before)."""
    now = time.time() if now is None else now
    since = int(now // 60) - 59
    with database.read() as connection:
        rows = connection.execute(
            select(channel_minutes.c.channel_id, channel_minutes.c.bucket,
                   func.sum(channel_minutes.c.requests))
            .where(channel_minutes.c.minute >= since)
            .group_by(channel_minutes.c.channel_id, channel_minutes.c.bucket)
        ).all()  # fmt: skip
    buckets: dict[int, dict[int, int]] = {}
    for channel_id, bucket, count in rows:
        buckets.setdefault(int(channel_id), {})[int(bucket)] = int(count)
    return {channel_id: _summary(found) for channel_id, found in buckets.items()}


def _summary(buckets: dict[int, int]) -> Summary:
    failed = buckets.pop(FAILED, 0)
    answered = sum(buckets.values())
    total = answered + failed
    if not answered:
        return Summary(total, 0.0 if total else None, None)
    middle, seen = (answered + 1) // 2, 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= middle:
            return Summary(total, answered / total, bucket_ms(bucket))
    raise AssertionError("unreachable")
