"""Redemption codes (SPEC §9): made by the admin CLI, shown once and stored hashed, redeemed
by `POST /api/user/topup` exactly once (a grant in the ledger), refused with the reason,
rate-limited per account and per address."""

from __future__ import annotations

import json
import time

import pytest
from shape import assert_shaped_like
from sqlalchemy import select
from starlette.testclient import TestClient

from quotaledger.billing import audit, redemptions
from quotaledger.errors import AlreadyExists, InvalidInput, NotFound
from quotaledger.identity import accounts
from quotaledger.store.database import Database
from quotaledger.store.tables import grants
from quotaledger.store.tables import redemptions as redemption_rows
from support import issue_token, login, run_cli


@pytest.fixture
def alice(client: TestClient, make_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    user = make_user("alice", quota=0)
    return {"Authorization": issue_token(client, "alice", user.password)}


def _code(database: Database, quota: int = 500_000, **options: object) -> str:
    return redemptions.create_codes(database, quota, **options)[0][1]  # type: ignore[arg-type]


def test_a_code_adds_its_quota_once_as_a_grant(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    code = _code(database)

    answer = client.post("/api/user/topup", json={"key": code}, headers=alice).json()
    again = client.post("/api/user/topup", json={"key": code}, headers=alice)

    assert_shaped_like(answer, "topup")
    assert answer["data"] == 500_000
    assert again.status_code == 409 and "already redeemed" in again.json()["message"]
    assert accounts.find_account(database, "alice").quota == 500_000
    with database.read() as connection:
        notes = connection.execute(select(grants.c.note, grants.c.quota)).all()
    assert [tuple(n) for n in notes if n.note.startswith("redemption")] == [
        ("redemption code 1", 500_000)
    ]
    assert audit.check_invariant(database) == []


def test_codes_are_stored_only_as_hashes_with_a_hint(database: Database) -> None:
    made = redemptions.create_codes(database, 1_000, 3, name="promo")

    with database.read() as connection:
        stored = json.dumps([list(row) for row in connection.execute(select(redemption_rows))])
    for code, raw in made:
        assert raw.startswith("qlr-") and raw not in stored
        assert code.hint == "…" + raw[-4:] and code.state(time.time()) == "unused"


def test_unusable_codes_are_refused_with_the_reason(make_user, database: Database) -> None:
    user_id = make_user("alice").account.id
    expired = _code(database, expires_at=int(time.time()) + 2)
    disabled = _code(database)
    redemptions.disable_code(database, 2)
    unknown = redemptions.create_codes(database, 5)[0][1]
    with database.write() as connection:  # forget it: a well-formed code nobody made
        connection.execute(redemption_rows.delete().where(redemption_rows.c.id == 3))
    time.sleep(2.1)

    for code, error, words in ((expired, InvalidInput, "expired"),
                               (disabled, InvalidInput, "disabled"),
                               (unknown, NotFound, "no such"),
                               ("qlr-typo", InvalidInput, "not a redemption code")):  # fmt: skip
        with pytest.raises(error, match=words):
            redemptions.redeem(database, user_id, code)
    assert accounts.find_account(database, "alice").quota == 25_000_000


def test_a_redeemed_code_cannot_be_disabled(make_user, database: Database) -> None:
    code = _code(database)
    redemptions.redeem(database, make_user("alice").account.id, code)

    with pytest.raises(AlreadyExists):
        redemptions.disable_code(database, 1)
    assert redemptions.list_codes(database)[0].redeemed_by == "alice"


def test_a_session_redeems_with_the_csrf_header(
    client: TestClient, make_user, database: Database
) -> None:
    user = make_user("bob", quota=0)
    csrf = login(client, "bob", user.password)
    code = _code(database)

    refused = client.post("/api/user/topup", json={"key": code})
    redeemed = client.post("/api/user/topup", json={"key": code}, headers={"X-CSRF-Token": csrf})

    assert refused.status_code == 403
    assert redeemed.status_code == 200 and redeemed.json()["data"] == 500_000


def test_guessing_codes_is_limited_per_account(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    good = _code(database)
    guesses = [
        client.post(
            "/api/user/topup", json={"key": _code(database)[:-6] + "AAAAAA"}, headers=alice
        ).status_code
        for _ in range(10)
    ]
    blocked = client.post("/api/user/topup", json={"key": good}, headers=alice)

    assert guesses == [422] * 10
    assert blocked.status_code == 429 and "retry-after" in blocked.headers
    assert accounts.find_account(database, "alice").quota == 0


def test_guessing_codes_is_limited_per_address_across_accounts(
    client: TestClient, make_user, database: Database
) -> None:
    statuses = []
    for name in ("u1", "u2", "u3", "u4"):
        user = make_user(name, quota=0)
        token = {"Authorization": issue_token(client, name, user.password)}
        for _ in range(8):
            response = client.post("/api/user/topup", json={"key": "qlr-x"}, headers=token)
            statuses.append(response.status_code)

    assert statuses[:30] == [422] * 30 and set(statuses[30:]) == {429}


def test_the_cli_makes_lists_and_disables_codes(database: Database) -> None:
    url = database.url
    made = run_cli("redeem", "create", "--usd", "2.50", "--count", "3", "--expires", "30d",
                   "--name", "launch", database_url=url)  # fmt: skip
    codes = made.stdout.split()
    listed = run_cli("redeem", "list", "--json", database_url=url)
    disabled = run_cli("redeem", "disable", "2", database_url=url)
    refused = run_cli("redeem", "create", "--usd", "0", database_url=url)

    assert (
        made.returncode == 0
        and len(codes) == 3
        and all(redemptions.is_well_formed(c) for c in codes)
    )
    assert "shown once" in made.stderr
    rows = json.loads(listed.stdout)
    assert [(r["quota"], r["name"], r["state"]) for r in rows] == [
        (1_250_000, "launch", "unused")
    ] * 3
    assert not any(code in listed.stdout for code in codes)
    assert disabled.returncode == 0 and "Disabled redemption code 2" in disabled.stdout
    states = {code.id: code.state(time.time()) for code in redemptions.list_codes(database)}
    assert states == {1: "unused", 2: "disabled", 3: "unused"}
    assert refused.returncode != 0 and "Error" in refused.stderr
