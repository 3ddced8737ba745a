"""SPEC §12's rate limits on `/api/token/` (fields of our own: new-api has none)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from test_key_routes import NEW_API_TOKEN

from quotaledger.identity import keys
from quotaledger.store.database import Database
from support import issue_token


@pytest.fixture
def alice(client: TestClient, make_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    user = make_user("alice", quota=10_000_000)
    return {"Authorization": issue_token(client, "alice", user.password)}


def test_a_key_is_created_and_changed_with_rate_limits(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    body = {**NEW_API_TOKEN, "rate_limit_rpm": 60, "rate_limit_concurrency": 3}
    created = client.post("/api/token/", json=body, headers=alice).json()["data"]
    assert (created["rate_limit_rpm"], created["rate_limit_tpm"]) == (60, 0)
    key = keys.get_key(database, created["id"])
    assert (key.rpm, key.tpm, key.concurrency) == (60, None, 3)

    change = {"id": created["id"], "rate_limit_tpm": 100_000, "rate_limit_rpm": 0}
    answer = client.put("/api/token/", json=change, headers=alice).json()["data"]
    assert (answer["rate_limit_rpm"], answer["rate_limit_tpm"]) == (0, 100_000)
    assert answer["rate_limit_concurrency"] == 3  # not sent: kept
    listed = client.get("/api/token/?p=1", headers=alice).json()["data"]["items"][0]
    assert listed["rate_limit_tpm"] == 100_000


def test_a_negative_limit_is_refused_naming_the_field(
    client: TestClient, alice: dict[str, str]
) -> None:
    body = {**NEW_API_TOKEN, "rate_limit_tpm": -1}
    answer = client.post("/api/token/", json=body, headers=alice)
    assert answer.status_code == 400 or answer.status_code == 422
    assert "rate_limit_tpm" in answer.text
