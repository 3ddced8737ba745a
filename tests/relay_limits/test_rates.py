"""Stored rates (SPEC §12, `relay.rates`) on SQLite and PostgreSQL: a key's and its
account's rates come with the key's admission (no extra read), the group's from memory,
and together they make the request's `LimitSpec`."""

from __future__ import annotations

import pytest

from quotaledger.errors import NotFound
from quotaledger.identity import keys
from quotaledger.relay import rates
from quotaledger.relay.limits import Lease, Limiter, MemoryCounters, Rates, Refusal
from quotaledger.store.database import Database


async def test_a_requests_spec_has_the_key_account_and_group_rates(
    database: Database, make_user
) -> None:  # type: ignore[no-untyped-def]
    user = make_user("alice", group="vip")
    key, raw = keys.create_key(database, user.account.id, "agent")
    rates.set_key_rates(database, key.id, Rates(rpm=5))
    rates.set_account_rates(database, user.account.id, Rates(tpm=9000))
    rates.set_group_rates(database, "vip", Rates(rpm=1, concurrency=3))
    rates.set_group_rates(database, "vip", Rates(concurrency=1), model="m")
    admission = keys.admit(database, keys.key_digest(raw), "127.0.0.1", None, {"m"})
    assert admission.account_rates == Rates(tpm=9000)
    spec = await rates.spec_for(admission, "m", 300, rates.GroupRates(database))
    assert (spec.key, spec.account) == (Rates(rpm=5), Rates(tpm=9000))
    assert (spec.group_rates, spec.model_rates) == (Rates(1, None, 3), Rates(None, None, 1))
    limiter = Limiter(MemoryCounters())
    assert isinstance(await limiter.admit(spec), Lease)
    refusal = await limiter.admit(spec)  # the group's default rpm of 1 for its member
    assert isinstance(refusal, Refusal) and refusal.scope == f"account:{user.account.id}"


async def test_group_rates_are_read_again_after_their_ttl(database: Database) -> None:
    now = [0.0]
    groups = rates.GroupRates(database, ttl=10, clock=lambda: now[0])
    assert await groups.of("vip", "m") == (Rates(), Rates())
    rates.set_group_rates(database, "vip", Rates(rpm=7))
    now[0] = 9.9
    assert (await groups.of("vip", "m"))[0] == Rates()
    now[0] = 10
    assert (await groups.of("vip", "m"))[0] == Rates(rpm=7)


def test_unknown_keys_and_accounts_are_not_found(database: Database) -> None:
    with pytest.raises(NotFound):
        rates.set_key_rates(database, 999, Rates(rpm=1))
    with pytest.raises(NotFound):
        rates.set_account_rates(database, 999, Rates(rpm=1))
