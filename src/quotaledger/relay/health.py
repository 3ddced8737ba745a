"""Channel health (SPEC §12): failures classified, channels disabled or cooled down by
themselves and probed back, the state shared by every instance.

- A dead credential or an upstream out of credit (401, 403, 402, `insufficient_quota`,
  "credit balance is too low") disables the channel at once, with the reason.
- Transient failures (429, 5xx, timeouts, connect errors) cool it down after `K` of them in
  `W` with no success between (default 3 in 60 s; never after one), for 30 s, doubling with
  each cool-down in a row up to 30 min. When the cool-down ends the channel takes traffic
  again ("half-open"): one more transient failure cools it again at once, one success
  heals it.
- A disabled or cooling channel is probed (the cheapest call of its provider, a callable the
  adapter passes in: `probe_due`, then `probed`); a success re-enables it. Disabled channels
  are probed every 5 min.
- The operator's `channel disable` is `channels.status` and is never touched here: a
  channel the operator disabled stays disabled whatever its health.

The transitions are pure functions of a `Health` and a clock (`after_success`,
`after_failure`, `after_probe`); `HealthBook` keeps them in `channel_health`, each change a
conditional UPDATE on the row's version, so two instances never both apply one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from quotaledger.store.database import Database
from quotaledger.store.tables import channel_health

log = logging.getLogger("quotaledger.relay.health")

OK, COOLING, DISABLED = "ok", "cooling", "disabled"
FATAL, TRANSIENT, FINE = "fatal", "transient", "fine"
_OUT_OF_CREDIT = ("insufficient_quota", "credit balance is too low")


@dataclass(frozen=True)
class Policy:
    failures: int = 3  # K
    window_ms: int = 60_000  # W
    cooldown_ms: int = 30_000  # the first cool-down; doubled each time in a row
    max_cooldown_ms: int = 30 * 60_000
    disabled_probe_ms: int = 5 * 60_000


@dataclass(frozen=True)
class Verdict:
    kind: str  # FATAL | TRANSIENT | FINE
    reason: str


def classify(status: int | None, detail: str = "", error: str | None = None) -> Verdict:
    """What a failed attempt says of the channel. `status` None with `error` ("timeout",
    "connect error", ...) when no answer came; `detail` is the upstream's error body."""
    lowered = detail.lower()
    text = f"HTTP {status}" if status is not None else (error or "no answer")
    if status in (401, 403):
        return Verdict(FATAL, f"credential refused ({text})")
    if status == 402 or any(word in lowered for word in _OUT_OF_CREDIT):
        return Verdict(FATAL, f"upstream out of credit ({text})")
    if status is None or status == 429 or status >= 500:
        return Verdict(TRANSIENT, text)
    return Verdict(FINE, text)  # the request's own fault (400, 404, 413...): not the channel's


@dataclass(frozen=True)
class Health:
    """One channel's health; times in ms since the epoch."""

    state: str = OK
    reason: str | None = None
    cause: str | None = None  # what disabled it: "failure" or "balance"
    until_ms: int = 0  # a cool-down's end
    level: int = 0  # cool-downs in a row
    failures: tuple[int, ...] = ()  # recent transient failures
    probe_at_ms: int = 0
    last_error: str | None = None
    last_error_at: int | None = None
    last_success_at: int | None = None

    def usable(self, now_ms: int) -> bool:
        """Whether requests may go to the channel (its operator status aside)."""
        return self.state == OK or (self.state == COOLING and now_ms >= self.until_ms)

    def probe_due(self, now_ms: int) -> bool:
        return self.state != OK and now_ms >= self.probe_at_ms


def after_success(health: Health, now_ms: int) -> Health:
    """An answer came: the channel is healthy again, its failure streak forgotten."""
    return replace(health, state=OK, reason=None, cause=None, until_ms=0, level=0,
                   failures=(), probe_at_ms=0, last_success_at=now_ms)  # fmt: skip


def after_failure(health: Health, verdict: Verdict, now_ms: int, policy: Policy) -> Health:
    """A request failed with `verdict` (FINE changes nothing but the last error)."""
    noted = replace(health, last_error=verdict.reason[:300], last_error_at=now_ms)
    if verdict.kind == FINE:
        return health
    if verdict.kind == FATAL:
        return _disabled(noted, verdict.reason, "failure", now_ms, policy)
    if health.state == DISABLED or (health.state == COOLING and now_ms < health.until_ms):
        return noted  # requests that started before: already out of rotation
    if health.state == COOLING:  # half-open: one failure is enough
        return _cooled(noted, now_ms, policy)
    recent = (*(t for t in health.failures if t > now_ms - policy.window_ms), now_ms)
    if len(recent) >= policy.failures:
        return _cooled(noted, now_ms, policy)
    return replace(noted, failures=recent)


def after_probe(health: Health, verdict: Verdict | None, now_ms: int, policy: Policy) -> Health:
    """A probe answered (`verdict` None) or failed."""
    if verdict is None or verdict.kind == FINE:
        return after_success(health, now_ms)
    noted = replace(health, last_error=verdict.reason[:300], last_error_at=now_ms)
    if verdict.kind == FATAL:
        return _disabled(noted, verdict.reason, health.cause or "failure", now_ms, policy)
    if health.state == DISABLED:  # still down, for the reason it was disabled
        return replace(noted, probe_at_ms=now_ms + policy.disabled_probe_ms)
    return _cooled(noted, now_ms, policy)


def disabled_for_balance(health: Health, reason: str, now_ms: int, policy: Policy) -> Health:
    """The upstream balance is at zero (`--disable-at-zero`)."""
    if health.state == DISABLED:
        return health
    return _disabled(health, reason, "balance", now_ms, policy)


def balance_back(health: Health, now_ms: int) -> Health:
    """The upstream balance is above zero again: a channel disabled for it comes back."""
    if health.state == DISABLED and health.cause == "balance":
        return replace(after_success(health, now_ms), last_success_at=health.last_success_at)
    return health


def _disabled(health: Health, reason: str, cause: str, now_ms: int, policy: Policy) -> Health:
    if health.state != DISABLED:
        log.warning("channel disabled automatically: %s", reason)
    return replace(health, state=DISABLED, reason=reason[:300], cause=cause, until_ms=0,
                   failures=(), probe_at_ms=now_ms + policy.disabled_probe_ms)  # fmt: skip


def _cooled(health: Health, now_ms: int, policy: Policy) -> Health:
    level = health.level + 1
    pause = min(policy.cooldown_ms * 2 ** min(level - 1, 30), policy.max_cooldown_ms)
    reason = f"{policy.failures} failures in {policy.window_ms // 1000} s"
    if health.state == COOLING:
        reason = "failed again after a cool-down"
    log.warning("channel cooling down for %d s: %s", pause // 1000, reason)
    return replace(health, state=COOLING, reason=reason, cause="failure", level=level,
                   until_ms=now_ms + pause, failures=(), probe_at_ms=now_ms + pause)  # fmt: skip


# ------------------------------------------------------------------ shared by instances

_FIELDS = [f.name for f in fields(Health)]


def _from_row(row: Any) -> tuple[Health, int]:
    values = dict(zip(_FIELDS, row[:-1], strict=True))
    text = values["failures"]
    values["failures"] = tuple(int(t) for t in text.split(",") if t) if text else ()
    return Health(**values), int(row[-1])


def _to_row(health: Health) -> dict[str, Any]:
    values = {name: getattr(health, name) for name in _FIELDS}
    values["failures"] = ",".join(str(t) for t in health.failures)
    return values


_COLUMNS = [channel_health.c[name] for name in (*_FIELDS, "version")]


class HealthBook:
    """Every channel's `Health` in the database. `change` applies a transition with a
    conditional UPDATE (the row's `version`), retried on a lost race with the row as the
    winner left it: transitions from two instances compose, neither is lost."""

    def __init__(self, database: Database, policy: Policy | None = None) -> None:
        self.database = database
        self.policy = policy or Policy()

    def all(self) -> dict[int, Health]:
        with self.database.read() as connection:
            rows = connection.execute(select(channel_health.c.channel_id, *_COLUMNS)).all()
        return {int(row[0]): _from_row(row[1:])[0] for row in rows}

    def get(self, channel_id: int) -> Health:
        return self._read(channel_id)[0]

    def _read(self, channel_id: int) -> tuple[Health, int | None]:
        with self.database.read() as connection:
            row = connection.execute(
                select(*_COLUMNS).where(channel_health.c.channel_id == channel_id)
            ).first()
        if row is None:
            return Health(), None
        return _from_row(row)

    def change(self, channel_id: int, transition: Callable[[Health], Health]) -> Health:
        """The channel's health after `transition`, stored unless it changed nothing."""
        for _ in range(20):
            current, version = self._read(channel_id)
            new = transition(current)
            if new == current:
                return current
            if self._store(channel_id, version, new):
                return new
        raise RuntimeError(f"channel {channel_id}: health kept changing under us")

    def _store(self, channel_id: int, version: int | None, health: Health) -> bool:
        values = _to_row(health)
        try:
            with self.database.write() as connection:
                if version is None:
                    connection.execute(
                        insert(channel_health).values(channel_id=channel_id, version=1, **values)
                    )
                    return True
                changed = connection.execute(
                    update(channel_health)
                    .where(channel_health.c.channel_id == channel_id)
                    .where(channel_health.c.version == version)
                    .values(version=version + 1, **values)
                ).rowcount
        except IntegrityError:  # another instance inserted the row first
            return False
        return bool(changed == 1)

    def reset(self, channel_id: int) -> None:
        """The operator enabled the channel: its automatic state is forgotten."""
        self.change(channel_id, lambda h: replace(Health(), last_error=h.last_error,
                    last_error_at=h.last_error_at, last_success_at=h.last_success_at))  # fmt: skip
