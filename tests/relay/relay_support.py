"""Helpers of the relay's domain tests: a funded user with a key and a price."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from quotaledger.billing import audit, ledger, pricing
from quotaledger.billing.reservations import Reservation, reserve
from quotaledger.identity import accounts, keys
from quotaledger.identity.keys import ApiKey, KeyLimits
from quotaledger.store.database import Database

# 2 USD in, 8 USD out per million tokens: a request costs input + 4 x output quota.
MODEL = "m"
_ids = itertools.count()


@dataclass
class Funded:
    user_id: int
    key: ApiKey


def price_model(database: Database) -> None:
    pricing.set_price(
        database, pricing.make_price(MODEL, input_usd_per_mtok="2", output_usd_per_mtok="8")
    )


def funded(
    database: Database, quota: int, limits: KeyLimits | None = None, *, name: str | None = None
) -> Funded:
    """A user whose balance is `quota` (granted), with one key; passwords are hashed once."""
    name = name or f"u{next(_ids)}"
    account = accounts.create_account(database, name, "password-123")
    if quota:
        ledger.top_up(database, name, quota)
    key, _ = keys.create_key(database, account.id, "k", limits or KeyLimits())
    return Funded(account.id, key)


def reserve_for(database: Database, who: Funded, amount: int, request_id: str | None = None,
                **options: object) -> Reservation:  # fmt: skip
    return reserve(
        database, request_id or f"r{next(_ids)}", user_id=who.user_id, key_id=who.key.id,
        model=MODEL, group="default", amount=amount, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def assert_consistent(database: Database) -> None:
    assert audit.check_invariant(database) == []


def balance(database: Database, who: Funded) -> int:
    with database.read() as connection:
        return accounts.get_account_in(connection, who.user_id).quota


def key_now(database: Database, who: Funded) -> ApiKey:
    return keys.get_key(database, who.key.id)
