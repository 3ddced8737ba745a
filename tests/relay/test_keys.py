"""API keys (SPEC §8): the format, what is stored, and every admission rule of the SPEC's
table, each raising the error its HTTP status comes from."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from quotaledger import tokens
from quotaledger.errors import AuthenticationFailed, InvalidInput, NotFound, PermissionDenied
from quotaledger.identity import accounts, keys
from quotaledger.identity.keys import KeyLimits
from quotaledger.store.database import Database
from quotaledger.store.tables import api_keys

OFFERED = frozenset({"gpt-4o-mini", "claude-sonnet"})
T0 = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()


def _admit(database: Database, raw: str, *, address: str = "127.0.0.1",
           model: str | None = "gpt-4o-mini", now: float = T0) -> keys.Admission:  # fmt: skip
    return keys.admit(database, keys.key_digest(raw), address, model, OFFERED, clock=lambda: now)


@pytest.fixture
def alice(make_user) -> accounts.Account:  # type: ignore[no-untyped-def]
    return make_user("alice").account  # type: ignore[no-any-return]


def test_a_new_key_has_the_sk_ql_format_and_only_its_hash_is_stored(
    database: Database, alice: accounts.Account
) -> None:
    key, raw = keys.create_key(database, alice.id, "laptop", clock=lambda: T0)

    assert raw.startswith("sk-ql-") and len(raw) == 44
    assert tokens.is_well_formed(raw, keys.KEY_PREFIX)
    assert not tokens.is_well_formed(raw)  # not a system token
    assert key.hint == "…" + raw[-4:] and key.owner == "alice"
    with database.read() as connection:
        row = connection.execute(select(api_keys)).one()
    assert raw not in repr(tuple(row))
    assert row.key_hash == tokens.hash_token(raw)
    assert raw not in repr(key)


def test_an_enabled_key_is_admitted_with_its_owner(
    database: Database, alice: accounts.Account
) -> None:
    _, raw = keys.create_key(database, alice.id, "laptop", KeyLimits(quota=1000))

    admission = _admit(database, raw)

    assert admission.key.name == "laptop"
    assert admission.key.remain_quota == 1000 and not admission.key.unlimited
    assert (admission.user_quota, admission.group) == (alice.quota, "default")


def test_a_malformed_key_is_refused_without_a_lookup() -> None:
    raw = tokens.generate_token(keys.KEY_PREFIX)
    typo = raw[:10] + ("A" if raw[10] != "A" else "B") + raw[11:]

    with pytest.raises(AuthenticationFailed, match="malformed"):
        keys.key_digest(typo)
    with pytest.raises(AuthenticationFailed, match="malformed"):
        keys.key_digest(tokens.generate_token())  # a system token is not a key


def test_an_unknown_key_is_refused(database: Database) -> None:
    with pytest.raises(AuthenticationFailed, match="unknown"):
        _admit(database, tokens.generate_token(keys.KEY_PREFIX))


def test_a_disabled_key_is_refused_until_enabled_again(
    database: Database, alice: accounts.Account
) -> None:
    key, raw = keys.create_key(database, alice.id, "laptop")

    keys.set_key_status(database, key.id, "disabled")
    with pytest.raises(AuthenticationFailed, match="disabled"):
        _admit(database, raw)
    keys.set_key_status(database, key.id, "enabled")
    assert _admit(database, raw).key.id == key.id


def test_a_deleted_key_is_refused_for_good_but_keeps_its_row(
    database: Database, alice: accounts.Account
) -> None:
    key, raw = keys.create_key(database, alice.id, "laptop")

    keys.delete_key(database, key.id)

    with pytest.raises(AuthenticationFailed, match="deleted"):
        _admit(database, raw)
    with pytest.raises(NotFound):
        keys.set_key_status(database, key.id, "enabled")
    assert keys.list_keys(database, alice.id) == []
    assert keys.get_key(database, key.id).name == "laptop"
    assert [k.id for k in keys.list_keys(database, include_deleted=True)] == [key.id]


def test_a_key_expires_at_its_second(database: Database, alice: accounts.Account) -> None:
    _, raw = keys.create_key(
        database, alice.id, "laptop", KeyLimits(expires_at=int(T0) + 100), clock=lambda: T0
    )

    assert _admit(database, raw, now=T0 + 99)
    with pytest.raises(AuthenticationFailed, match="expired"):
        _admit(database, raw, now=T0 + 100)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("10.1.2.3", True), ("::ffff:10.1.2.3", True), ("192.168.1.1", False),
     ("2001:db8::1", True), ("2001:db9::1", False), ("not-an-address", False)],
)  # fmt: skip
def test_a_key_limited_to_networks_admits_only_their_addresses(
    database: Database, alice: accounts.Account, address: str, allowed: bool
) -> None:
    limits = KeyLimits(networks=("10.0.0.0/8", "2001:db8::/32"))
    _, raw = keys.create_key(database, alice.id, "office", limits)

    if allowed:
        assert _admit(database, raw, address=address)
    else:
        with pytest.raises(PermissionDenied, match=r"may not be used from|limited to"):
            _admit(database, raw, address=address)


def test_a_disabled_owner_makes_the_key_forbidden(
    database: Database, alice: accounts.Account
) -> None:
    _, raw = keys.create_key(database, alice.id, "laptop")

    accounts.set_status(database, "alice", "disabled")

    with pytest.raises(PermissionDenied, match="account"):
        _admit(database, raw)


def test_a_key_limited_to_models_refuses_others_and_unoffered_models_are_not_found(
    database: Database, alice: accounts.Account
) -> None:
    key, raw = keys.create_key(database, alice.id, "laptop", KeyLimits(models=("gpt-4o-mini",)))

    assert _admit(database, raw, model="gpt-4o-mini")
    with pytest.raises(PermissionDenied, match="claude-sonnet"):
        _admit(database, raw, model="claude-sonnet")
    with pytest.raises(PermissionDenied):
        _admit(database, raw, model="unknown-model")  # not allowed comes first
    _, any_model = keys.create_key(database, alice.id, "any")
    with pytest.raises(NotFound, match="not offered"):
        _admit(database, any_model, model="unknown-model")
    assert _admit(database, raw, model=None).key.id == key.id
    assert keys.allowed_models(key, OFFERED) == ["gpt-4o-mini"]


def test_a_key_may_only_take_a_group_its_owner_has(database: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    vip = make_user("vicky", group="vip").account

    _, raw = keys.create_key(database, vip.id, "k", KeyLimits(group="default"))
    assert _admit(database, raw).group == "default"
    _, raw = keys.create_key(database, vip.id, "k2")
    assert _admit(database, raw).group == "vip"
    with pytest.raises(InvalidInput, match="group"):
        keys.create_key(database, vip.id, "k3", KeyLimits(group="enterprise"))


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        (KeyLimits(quota=-1), "quota"),
        (KeyLimits(expires_at=int(T0) - 1), "expires"),
        (KeyLimits(period="day"), "period"),
        (KeyLimits(period="week", period_quota=5), "period"),
        (KeyLimits(period="day", period_quota=0), "period_quota"),
        (KeyLimits(models=("",)), "models"),
        (KeyLimits(networks=("10.0.0.300/8",)), "networks"),
    ],
)
def test_bad_limits_are_refused_and_nothing_is_created(
    database: Database, alice: accounts.Account, limits: KeyLimits, field: str
) -> None:
    with pytest.raises(InvalidInput, match=field):
        keys.create_key(database, alice.id, "k", limits, clock=lambda: T0)
    assert keys.list_keys(database) == []


def test_a_user_manages_only_their_own_keys(database: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_user("alice").account, make_user("bob").account
    key, _ = keys.create_key(database, alice.id, "laptop")

    with pytest.raises(NotFound):
        keys.set_key_status(database, key.id, "disabled", user_id=bob.id)
    with pytest.raises(NotFound):
        keys.get_key(database, key.id, user_id=bob.id)
    assert keys.delete_key(database, key.id, user_id=alice.id).deleted_at is not None


def test_a_key_is_exhausted_when_its_own_budget_is_spent(
    database: Database, alice: accounts.Account
) -> None:
    key, _ = keys.create_key(database, alice.id, "k", KeyLimits(quota=0))

    assert key.state(T0) == "exhausted"
    assert keys.create_key(database, alice.id, "u")[0].state(T0) == "enabled"


async def test_the_event_loop_lookup_admits_and_refuses_like_the_pooled_one(
    database: Database, alice: accounts.Account
) -> None:
    key, raw = keys.create_key(database, alice.id, "laptop", KeyLimits(networks=("10.0.0.0/8",)))
    digest = keys.key_digest(raw)

    admitted = await keys.admit_async(database, digest, "10.0.0.1", "gpt-4o-mini", OFFERED)
    assert admitted == keys.admit(database, digest, "10.0.0.1", "gpt-4o-mini", OFFERED)
    with pytest.raises(PermissionDenied):
        await keys.admit_async(database, digest, "192.168.0.1", "gpt-4o-mini", OFFERED)
    keys.set_key_status(database, key.id, "disabled")
    await asyncio.sleep(0)  # a request arriving after the change: the next pass of the loop
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await keys.admit_async(database, digest, "10.0.0.1", "gpt-4o-mini", OFFERED)
