"""`/api/user/self` and the login answer carry role and status as new-api's integers (SPEC §1,
§9): 1 user, 10 admin; 1 enabled, 2 disabled."""

from __future__ import annotations

from shape import assert_shaped_like
from starlette.testclient import TestClient

from quotaledger.identity import accounts
from quotaledger.store.database import Database
from support import ADMIN_PASSWORD, issue_token


def test_a_users_balance_says_role_1_and_status_1(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    answer = client.get("/api/user/self", headers={"Authorization": token}).json()

    assert_shaped_like(answer, "user_self")
    assert (answer["data"]["role"], answer["data"]["status"]) == (1, 1)


def test_an_admin_is_role_10_in_the_balance_and_at_login(client: TestClient) -> None:
    login = client.post("/api/user/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    token = issue_token(client, "admin", ADMIN_PASSWORD)

    balance = client.get("/api/user/self", headers={"Authorization": token}).json()["data"]

    assert login.json()["data"]["role"] == balance["role"] == 10
    assert balance["status"] == 1


def test_the_cli_keeps_role_and_status_as_words(make_user, database: Database) -> None:
    make_user("alice")
    account = accounts.find_account(database, "alice")

    assert (account.as_json()["role"], account.as_json()["status"]) == ("user", "enabled")
    accounts.set_status(database, "alice", "disabled")
    disabled = accounts.find_account(database, "alice").as_api_json()
    assert disabled["status"] == 2
