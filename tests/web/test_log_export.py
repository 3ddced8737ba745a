"""CSV export of the log (SPEC §10): `GET /api/log/self/export.csv` streams the filtered
log in bounded batches, and no cell can start a spreadsheet formula."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest
from starlette.testclient import TestClient

from quotaledger.billing import usage_log
from quotaledger.server import log_export
from quotaledger.store.database import Database
from quotaledger.store.tables import usage
from support import issue_token

DAY = 1_790_000_000  # 2026-09-21 UTC, a fixed moment for the rows


def write_rows(database: Database, user_id: int, count: int, **columns: object) -> None:
    """`count` log rows straight into the table (a charge each would take minutes)."""
    common = {"model": "model-a", "prompt_tokens": 3, "completion_tokens": 4, "quota": 10_000}
    rows = [
        {
            "user_id": user_id,
            "request_id": f"r{number}",
            "quota_after": 0,
            "created_at": DAY + number,
            **common,
            **columns,
        }
        for number in range(count)
    ]
    with database.write() as connection:
        connection.execute(usage.insert(), rows)


@pytest.fixture
def alice(client: TestClient, make_user) -> tuple[int, dict[str, str]]:  # type: ignore[no-untyped-def]
    user = make_user("alice")
    return user.account.id, {"Authorization": issue_token(client, "alice", user.password)}


def parsed(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.slow
def test_ten_thousand_rows_stream_in_bounded_batches(
    client: TestClient, alice: tuple[int, dict[str, str]], database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    user_id, headers = alice
    write_rows(database, user_id, 10_000)
    batches: list[int] = []
    read = usage_log.log_rows_before

    def counted(*args: object) -> list[dict[str, object]]:
        rows = read(*args)  # type: ignore[arg-type]
        batches.append(len(rows))
        return rows

    monkeypatch.setattr(usage_log, "log_rows_before", counted)
    with client.stream("GET", "/api/log/self/export.csv", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in response.headers["content-disposition"]
        assert "content-length" not in response.headers  # streamed, not built whole
        lines = list(response.iter_lines())

    rows = parsed("\n".join(lines))
    assert rows[0] == list(log_export.HEADER)
    assert len(rows) == 1 + 10_000
    assert rows[1][1] == "r9999" and rows[-1][1] == "r0"  # newest first, none lost
    assert len({row[1] for row in rows[1:]}) == 10_000
    # 20 full batches and one empty read that ends the stream: never more than 500 in memory
    assert batches == [log_export.BATCH] * 20 + [0]


def test_the_first_rows_go_out_before_the_rest_is_read(
    database: Database,
    make_user,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    user = make_user("alice")
    write_rows(database, user.account.id, 3 * log_export.BATCH)
    calls: list[int | None] = []
    read = usage_log.log_rows_before

    def counted(db: Database, user_id: int, wanted: object, before: int | None, limit: int):  # type: ignore[no-untyped-def]
        calls.append(before)
        return read(db, user_id, wanted, before, limit)  # type: ignore[arg-type]

    async def first_two_chunks() -> list[str]:
        chunks = log_export.csv_chunks(database, user.account.id, usage_log.LogFilter())
        taken = [await anext(chunks), await anext(chunks)]
        await chunks.aclose()
        return taken

    monkeypatch.setattr(usage_log, "log_rows_before", counted)
    header, first = asyncio.run(first_two_chunks())
    assert header.startswith("time_utc,")
    assert len(parsed(first)) == log_export.BATCH
    assert calls == [None]  # one batch read for the first chunk, not the whole log


def test_the_export_takes_the_log_filters(
    client: TestClient, alice: tuple[int, dict[str, str]], database: Database
) -> None:
    user_id, headers = alice
    write_rows(database, user_id, 5)
    with database.write() as connection:
        connection.execute(usage.update().where(usage.c.request_id == "r2").values(model="model-b"))
    only_b = client.get("/api/log/self/export.csv?model_name=model-b", headers=headers)
    assert [row[1] for row in parsed(only_b.text)[1:]] == ["r2"]
    window = f"start_timestamp={DAY + 1}&end_timestamp={DAY + 3}"
    ranged = client.get(f"/api/log/self/export.csv?{window}", headers=headers)
    assert [row[1] for row in parsed(ranged.text)[1:]] == ["r3", "r2", "r1"]
    refused = client.get(
        f"/api/log/self/export.csv?start_timestamp={DAY + 9}&end_timestamp={DAY}", headers=headers
    )
    assert refused.status_code == 422


def test_cells_that_would_start_a_formula_are_defused(
    client: TestClient, alice: tuple[int, dict[str, str]], database: Database
) -> None:
    user_id, headers = alice
    names = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "plain"]
    defused = ["'" + name for name in names[:4]] + ["plain"]
    for number, name in enumerate(names):
        with database.write() as connection:
            connection.execute(
                usage.insert(),
                {"user_id": user_id, "request_id": name, "model": "model-a", "prompt_tokens": 1,
                 "completion_tokens": 1, "quota": 5, "quota_after": 0,
                 "created_at": DAY + number, "key_name": name},
            )  # fmt: skip
    rows = parsed(client.get("/api/log/self/export.csv", headers=headers).text)[1:]
    request_ids = sorted(row[1] for row in rows)
    assert request_ids == sorted(defused)
    assert all(row[1] == row[2] for row in rows)  # the key name, defused the same way
    assert {row[6] for row in rows} == {"5"}  # numbers are left alone


def test_the_export_needs_a_caller(client: TestClient) -> None:
    assert client.get("/api/log/self/export.csv").status_code == 401
