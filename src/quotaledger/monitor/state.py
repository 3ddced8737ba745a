"""The alert state machine (SPEC §7), pure: no I/O, no clock of its own.

`decide(record, observation, thresholds, policy, now)` returns the account's new record and
the message to send, if any. The record remembers which state was last *announced* (a
message delivered), not merely entered: an alert whose delivery failed is tried again at the
next poll, and a state that returns to the announced one before delivery sends nothing.
The caller marks a delivered message with `delivered(record, now)`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from quotaledger.monitor.config import Policy, Thresholds


class State(StrEnum):
    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"


SEVERITY = {State.OK: 0, State.WARNING: 1, State.CRITICAL: 2, State.UNKNOWN: 3}
MIN_RECOVERY_MARGIN = Decimal("0.50")
"""The smallest recovery margin, in the thresholds' currency: 10 % of a threshold of 0 (or of
the zero below which a balance is negative) would be no margin at all."""


class Kind(StrEnum):
    ALERT = "alert"  # a new low or unknown state
    RESOLVED = "resolved"  # back to OK
    REMINDER = "reminder"  # still low after `repeat`


@dataclass(frozen=True)
class Record:
    """What is remembered of one account between polls (persisted in the state file)."""

    state: State | None = None  # None until the first reading or enough failures
    level: State | None = None  # the balance's level at the last successful poll
    since: datetime | None = None  # when `state` began
    failures: int = 0  # consecutive failed polls
    last_error: str | None = None
    announced: State | None = None  # the state the last delivered message told of
    announced_at: datetime | None = None


@dataclass(frozen=True)
class Reading:
    """A successful poll: the remaining balance in the thresholds' currency."""

    amount: Decimal


@dataclass(frozen=True)
class Failure:
    """A failed poll, with a human reason (never a token)."""

    error: str


Observation = Reading | Failure


@dataclass(frozen=True)
class Event:
    kind: Kind
    state: State
    previous: State | None  # the state announced before this message
    since: datetime


@dataclass(frozen=True)
class Decision:
    record: Record
    event: Event | None  # at most one message per account per poll


def decide(
    record: Record, observation: Observation, thresholds: Thresholds, policy: Policy, now: datetime
) -> Decision:
    """The new record after `observation` at `now`, and the message it calls for."""
    record = _observe(record, observation, thresholds, policy, now)
    if record.announced is None and record.state is State.OK:
        # The first healthy poll is silent; it just becomes what "resolved" returns to.
        return Decision(replace(record, announced=State.OK, announced_at=now), None)
    return Decision(record, _event(record, policy, now))


def delivered(record: Record, now: datetime) -> Record:
    """`record` after its event's message has been delivered at `now`."""
    return replace(record, announced=record.state, announced_at=now)


def level_of(
    amount: Decimal, thresholds: Thresholds, previous: State | None, margin: Decimal
) -> State:
    """The balance's level. Getting better means clearing a threshold by `margin` (a fraction
    of it, but at least `MIN_RECOVERY_MARGIN` unless `margin` is 0), so that a balance
    hovering at a threshold does not flap; the zero below which a balance is negative (always
    CRITICAL) is a threshold too."""
    raw = _raw_level(amount, thresholds.warn, thresholds.critical, Decimal(0))
    if previous is None or SEVERITY[raw] >= SEVERITY[previous]:
        return raw
    raised = _raw_level(
        amount,
        _raise(thresholds.warn, margin),
        _raise(thresholds.critical, margin),
        _raise(Decimal(0), margin),
    )
    return raised if SEVERITY[raised] <= SEVERITY[previous] else previous


def _raw_level(
    amount: Decimal, warn: Decimal | None, critical: Decimal | None, floor: Decimal | None
) -> State:
    # Relays let debits overshoot: a negative balance (below `floor`, 0 unless recovering) is
    # critical with or without thresholds.
    if (floor is not None and amount < floor) or (critical is not None and amount <= critical):
        return State.CRITICAL
    if warn is not None and amount <= warn:
        return State.WARNING
    return State.OK


def _raise(threshold: Decimal | None, margin: Decimal) -> Decimal | None:
    if threshold is None:
        return None
    if margin <= 0:
        return threshold
    return threshold + max(abs(threshold) * margin, MIN_RECOVERY_MARGIN)


def _observe(
    record: Record, observation: Observation, thresholds: Thresholds, policy: Policy, now: datetime
) -> Record:
    if isinstance(observation, Reading):
        margin = policy.recovery_margin
        level = level_of(observation.amount, thresholds, record.level, margin)
        if (record.level, record.failures, record.last_error) != (level, 0, None):
            record = replace(record, level=level, failures=0, last_error=None)
        return _enter(record, level, now)
    failed = replace(record, failures=record.failures + 1, last_error=observation.error)
    if failed.failures >= policy.unknown_after:
        return _enter(failed, State.UNKNOWN, now)
    return failed


def _enter(record: Record, state: State, now: datetime) -> Record:
    if record.state is state:
        return record
    return replace(record, state=state, since=now)


def _event(record: Record, policy: Policy, now: datetime) -> Event | None:
    state, since = record.state, record.since
    if state is None or since is None:
        return None
    if state is not record.announced:
        kind = Kind.RESOLVED if state is State.OK else Kind.ALERT
        return Event(kind, state, record.announced, since)
    repeat, last = policy.repeat, record.announced_at
    if state is not State.OK and repeat is not None and last is not None and now - last >= repeat:
        return Event(Kind.REMINDER, state, record.announced, since)
    return None
