"""The pass snapshot (`store.inline_reads`): token lookups made in one pass of the event loop
share one SQLite read transaction, which ends as soon as the loop turns, so that any later
request reads what was committed before it arrived (a replaced token is refused at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from quotaledger.errors import AuthenticationFailed
from quotaledger.identity import accounts
from quotaledger.identity.accounts import account_for_token_digest_async as lookup
from quotaledger.identity.bootstrap import prepare_database
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.tokens import hash_token


@dataclass
class Rig:
    database: Database
    alice: accounts.Account
    token: str


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'q.db'}")
    database = prepare_database(settings)
    alice = accounts.create_account(database, "alice", "alice-password-123", quota=1)
    yield Rig(database, alice, accounts.replace_token(database, alice.id))
    database.dispose()


async def test_lookups_share_a_pass_snapshot_and_the_next_pass_sees_new_commits(
    rig: Rig,
) -> None:
    reader = rig.database.inline_reader()
    assert reader is not None

    assert (await lookup(rig.database, hash_token(rig.token))).username == "alice"
    assert reader.in_transaction  # this pass's snapshot, shared by its other lookups

    await asyncio.sleep(0)  # the loop turns: the pass is over, and so is its snapshot
    assert not reader.in_transaction

    new = accounts.replace_token(rig.database, rig.alice.id)  # committed on another connection
    with pytest.raises(AuthenticationFailed, match="unknown or replaced"):
        await lookup(rig.database, hash_token(rig.token))
    assert (await lookup(rig.database, hash_token(new))).username == "alice"


async def test_each_pass_opens_and_ends_its_own_snapshot(rig: Rig) -> None:
    for _ in range(3):
        assert (await lookup(rig.database, hash_token(rig.token))).id == rig.alice.id
        await asyncio.sleep(0)
    reader = rig.database.inline_reader()
    assert reader is not None and not reader.in_transaction


async def test_a_reopened_database_gets_a_snapshot_of_its_own(rig: Rig) -> None:
    assert (await lookup(rig.database, hash_token(rig.token))).id == rig.alice.id
    await asyncio.sleep(0)

    rig.database.dispose()  # closes the inline reader; the next lookup opens another

    assert (await lookup(rig.database, hash_token(rig.token))).id == rig.alice.id
