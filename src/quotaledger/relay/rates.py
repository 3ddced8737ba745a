"""Who is limited how (SPEC §12): the stored RPM, TPM and concurrency of keys, accounts
and groups, and the `LimitSpec` of one request (`spec_for`).

A key's and an account's rates sit on their rows (read with the key at admission: no extra
query). A group's sit in `group_limits`: `model` '' holds the defaults of its members, any
other model the limits of each member's use of that model. `GroupRates` keeps them in
memory, read again every `ttl` seconds (10: a change reaches every instance within that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from sqlalchemy import delete, select, update

from quotaledger.errors import InvalidInput, NotFound
from quotaledger.relay.limits import NO_RATES, LimitSpec, Rates
from quotaledger.store.database import Database
from quotaledger.store.tables import api_keys, group_limits, users

_KINDS = ("rpm", "tpm", "concurrency")


def _values(rates: Rates) -> dict[str, int | None]:
    return {kind: getattr(rates, kind) for kind in _KINDS}


def _rates(row: Any) -> Rates:
    return Rates(*(None if v is None else int(v) for v in row))


def set_key_rates(database: Database, key_id: int, rates: Rates) -> None:
    _set(database, api_keys, key_id, rates, f"no API key with id {key_id}")


def set_account_rates(database: Database, user_id: int, rates: Rates) -> None:
    _set(database, users, user_id, rates, f"no user with id {user_id}")


def _set(database: Database, table: Any, row_id: int, rates: Rates, missing: str) -> None:
    with database.write() as connection:
        changed = connection.execute(
            update(table).where(table.c.id == row_id).values(**_values(rates))
        ).rowcount
    if changed != 1:
        raise NotFound(missing)


def key_rates(database: Database, key_id: int) -> Rates:
    return _get(database, api_keys, key_id)


def account_rates(database: Database, user_id: int) -> Rates:
    return _get(database, users, user_id)


def _get(database: Database, table: Any, row_id: int) -> Rates:
    with database.read() as connection:
        row = connection.execute(
            select(*(table.c[k] for k in _KINDS)).where(table.c.id == row_id)
        ).first()
    if row is None:
        raise NotFound(f"no row {row_id}")
    return _rates(row)


def set_group_rates(database: Database, group: str, rates: Rates, model: str = "") -> None:
    """The group's defaults (`model` ''), or its limits on `model`; no rate: removed."""
    if not group or len(group) > 64 or len(model) > 128:
        raise InvalidInput("group", "a group of 1-64 characters, a model of at most 128")
    scope = (group_limits.c.group == group) & (group_limits.c.model == model)
    with database.write() as connection:
        connection.execute(delete(group_limits).where(scope))
        if rates:
            connection.execute(
                group_limits.insert().values(group=group, model=model, **_values(rates))
            )


def all_group_rates(database: Database) -> dict[tuple[str, str], Rates]:
    """(group, model) -> rates, model '' for the group's defaults."""
    columns = (group_limits.c.group, group_limits.c.model, *(group_limits.c[k] for k in _KINDS))
    with database.read() as connection:
        rows = connection.execute(select(*columns)).all()
    return {(row[0], row[1]): _rates(row[2:]) for row in rows}


class GroupRates:
    """The groups' rates in memory, refreshed every `ttl` seconds."""

    def __init__(
        self, database: Database, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.database, self.ttl, self.clock = database, ttl, clock
        self._rates: dict[tuple[str, str], Rates] = {}
        self._read_at = -float("inf")

    async def get(self) -> dict[tuple[str, str], Rates]:
        if self.clock() - self._read_at >= self.ttl:
            self._rates = await anyio.to_thread.run_sync(all_group_rates, self.database)
            self._read_at = self.clock()
        return self._rates

    async def of(self, group: str, model: str) -> tuple[Rates, Rates]:
        """The group's defaults for members, and its limits on `model`."""
        found = await self.get()
        return found.get((group, ""), NO_RATES), found.get((group, model), NO_RATES)


async def spec_for(
    admission: Any, model: str, estimated_tokens: int, groups: GroupRates
) -> LimitSpec:
    """The `LimitSpec` of a request admitted as `admission` (`identity.keys.Admission`):
    the key's rates, its account's, and its account's group's (membership, not the key's
    pricing group)."""
    key = admission.key
    group_rates, model_rates = await groups.of(admission.user_group, model)
    return LimitSpec(
        key_id=key.id,
        account_id=key.user_id,
        model=model,
        estimated_tokens=estimated_tokens,
        key=Rates(key.rpm, key.tpm, key.concurrency),
        account=admission.account_rates,
        group_rates=group_rates,
        model_rates=model_rates,
    )
