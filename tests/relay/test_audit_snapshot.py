"""The invariant's audit (audit.check_invariant) reads the ledger while the relay writes it:
the fault tests ask it right after settlements, sweeps and terminated connections. It must
read one consistent snapshot, or it reports violations that are not there."""

from __future__ import annotations

from typing import Any

from relay_support import funded
from sqlalchemy import event

from quotaledger.billing import audit, ledger
from quotaledger.store.database import Database


def test_a_top_up_committed_while_the_audit_reads_is_not_reported_as_a_violation(
    database: Database,
) -> None:
    funded(database, 1_000, name="alice")
    writer = Database(database.url)  # another connection pool: another session
    done: list[int] = []

    def top_up_once(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # Right after the audit has summed the grants, before it reads the users' rows.
        if not done and "FROM grants" in statement:
            done.append(ledger.top_up(writer, "alice", 500))

    event.listen(database.engine, "after_cursor_execute", top_up_once)
    try:
        problems = audit.check_invariant(database)
    finally:
        event.remove(database.engine, "after_cursor_execute", top_up_once)
        writer.dispose()
    assert done == [1_500]  # the top-up did commit in the middle of the audit
    assert problems == []
    assert audit.check_invariant(database) == []  # and the ledger itself is whole
