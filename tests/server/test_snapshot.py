"""`PassSnapshot`: token lookups made in one pass of the event loop share one SQLite read
transaction, which ends as soon as the loop turns, so that any later request reads what was
committed before it arrived (a replaced token is refused at once)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from quotaledger import accounts
from quotaledger.bootstrap import prepare_database
from quotaledger.errors import AuthenticationFailed
from quotaledger.server.app import create_app
from quotaledger.settings import Settings


async def test_lookups_share_a_pass_snapshot_and_the_next_pass_sees_new_commits(
    tmp_path: Path,
) -> None:
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'q.db'}")
    database = prepare_database(settings)
    state = create_app(settings, database).state.ql
    alice = accounts.create_account(database, "alice", "alice-password-123", quota=1)
    old = accounts.replace_token(database, alice.id)
    reader = database.inline_reader()
    assert reader is not None

    assert (await state.account_for_token(old)).username == "alice"
    assert reader.in_transaction  # this pass's snapshot, shared by its other lookups

    await asyncio.sleep(0)  # the loop turns: the pass is over, and so is its snapshot
    assert not reader.in_transaction

    new = accounts.replace_token(database, alice.id)  # committed on another connection
    with pytest.raises(AuthenticationFailed, match="unknown or replaced"):
        await state.account_for_token(old)
    assert (await state.account_for_token(new)).username == "alice"
    database.dispose()


async def test_each_pass_opens_and_ends_its_own_snapshot(tmp_path: Path) -> None:
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'q.db'}")
    database = prepare_database(settings)
    state = create_app(settings, database).state.ql
    alice = accounts.create_account(database, "alice", "alice-password-123", quota=1)
    token = accounts.replace_token(database, alice.id)

    for _ in range(3):  # several passes, each opening and ending its own snapshot
        assert (await state.account_for_token(token)).id == alice.id
        await asyncio.sleep(0)
    reader = database.inline_reader()
    assert reader is not None and not reader.in_transaction
    database.dispose()


async def test_a_reopened_database_gets_a_snapshot_of_its_own(tmp_path: Path) -> None:
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'q.db'}")
    database = prepare_database(settings)
    state = create_app(settings, database).state.ql
    alice = accounts.create_account(database, "alice", "alice-password-123", quota=1)
    token = accounts.replace_token(database, alice.id)
    assert (await state.account_for_token(token)).id == alice.id
    await asyncio.sleep(0)

    database.dispose()  # closes the inline reader; the next lookup opens another

    assert (await state.account_for_token(token)).id == alice.id
    database.dispose()
