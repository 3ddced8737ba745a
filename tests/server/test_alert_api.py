"""The alert settings API (`/api/user/alerts...`): thresholds in USD, Apprise URLs that are
never shown back, per-key thresholds, and the test notification to a receiver on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from alert_inbox import SECRET_PATH, Inbox, running_inbox
from quotaledger.billing import pricing
from quotaledger.identity import keys
from quotaledger.identity.keys import KeyLimits
from quotaledger.settings import Secret, Settings
from quotaledger.store.database import Database
from support import ADMIN_PASSWORD, issue_token, login

SECRET_KEY = "alert-api-tests-secret-key-of-enough-length"


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The server's settings with a secret key, which the URLs are encrypted with, and the
    inbox's loopback address allowed to users' alerts."""
    return Settings.from_env({}, database_url=database_url, admin_password=None).with_overrides(
        admin_password=Secret(ADMIN_PASSWORD),
        secret_key=Secret(SECRET_KEY),
        alert_allow_hosts=("127.0.0.1",),
    )


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with running_inbox() as running:
        yield running


@pytest.fixture
def alice(client: TestClient, make_user: Any) -> dict[str, str]:
    user = make_user("alice")
    return {"Authorization": issue_token(client, "alice", user.password)}


def test_thresholds_are_set_in_usd_and_kept_as_quota(
    client: TestClient, alice: dict[str, str]
) -> None:
    answer = client.put("/api/user/alerts", json={"warn_usd": "20", "critical_usd": 5.5},
                        headers=alice)  # fmt: skip
    assert answer.status_code == 200, answer.text
    data = client.get("/api/user/alerts", headers=alice).json()["data"]
    assert (data["warn_quota"], data["critical_quota"]) == (10_000_000, 2_750_000)
    assert (data["warn_usd"], data["critical_usd"]) == ("20.00", "5.50")
    assert data["recovery_margin"] == "10%"
    assert data["urls"] == []


def test_a_critical_threshold_above_the_warning_one_is_refused(
    client: TestClient, alice: dict[str, str]
) -> None:
    answer = client.put("/api/user/alerts", json={"warn_usd": 5, "critical_usd": 20},
                        headers=alice)  # fmt: skip
    assert answer.status_code == 422
    assert "critical" in answer.json()["message"]


def test_a_url_is_shown_back_only_as_a_hint(
    client: TestClient, alice: dict[str, str], inbox: Inbox
) -> None:
    added = client.post("/api/user/alerts/urls", json={"url": inbox.url}, headers=alice)
    assert added.status_code == 200, added.text
    listed = client.get("/api/user/alerts", headers=alice)
    assert listed.json()["data"]["urls"] == [{"index": 0, "hint": "json://…0451"}]
    assert SECRET_PATH not in added.text + listed.text
    removed = client.delete("/api/user/alerts/urls/0", headers=alice)
    assert removed.json()["data"]["urls"] == []


def test_a_url_apprise_cannot_use_is_refused_without_repeating_it(
    client: TestClient, alice: dict[str, str]
) -> None:
    answer = client.post("/api/user/alerts/urls", json={"url": "nosuch://s3cr3t-part"},
                         headers=alice)  # fmt: skip
    assert answer.status_code == 422
    assert "unknown Apprise scheme" in answer.json()["message"]
    assert "s3cr3t" not in answer.text


def test_the_test_notification_reaches_every_url(
    client: TestClient, alice: dict[str, str], inbox: Inbox
) -> None:
    client.post("/api/user/alerts/urls", json={"url": inbox.url}, headers=alice)
    answer = client.post("/api/user/alerts/test", headers=alice)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"sent_to": 1}
    assert inbox.titles() == ["quotaledger: test notification"]
    assert "alice" in inbox.received[0]["message"]


def test_a_test_notification_not_delivered_says_so(
    client: TestClient, alice: dict[str, str], inbox: Inbox
) -> None:
    client.post("/api/user/alerts/urls", json={"url": inbox.url}, headers=alice)
    inbox.fail_next = 1
    answer = client.post("/api/user/alerts/test", headers=alice)
    assert answer.status_code == 502
    assert "not delivered" in answer.json()["message"]
    assert SECRET_PATH not in answer.text


def test_a_test_notification_needs_a_url(client: TestClient, alice: dict[str, str]) -> None:
    answer = client.post("/api/user/alerts/test", headers=alice)
    assert answer.status_code == 422
    assert "add an Apprise URL first" in answer.json()["message"]


def test_a_limited_keys_thresholds_are_listed_with_it(
    client: TestClient, alice: dict[str, str], database: Database, make_user: Any
) -> None:
    me = client.get("/api/user/self", headers=alice).json()["data"]["id"]
    limited, _ = keys.create_key(database, me, "ci", KeyLimits(quota=5_000_000))
    unlimited, _ = keys.create_key(database, me, "laptop", KeyLimits())
    answer = client.put(f"/api/user/alerts/keys/{limited.id}", json={"critical_usd": "2"},
                        headers=alice)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["keys"] == [{
        "id": limited.id, "name": "ci", "remain_quota": 5_000_000, "remain_quota_usd": "10.00",
        "warn_quota": None, "critical_quota": 1_000_000, "warn_usd": None, "critical_usd": "2.00",
    }]  # fmt: skip
    refused = client.put(f"/api/user/alerts/keys/{unlimited.id}", json={"critical_usd": "2"},
                         headers=alice)  # fmt: skip
    assert refused.status_code == 422
    bob = make_user("bob")
    bobs, _ = keys.create_key(database, bob.account.id, "bobs", KeyLimits(quota=5_000_000))
    assert client.put(f"/api/user/alerts/keys/{bobs.id}", json={"critical_usd": "2"},
                      headers=alice).status_code == 404  # fmt: skip


def test_a_session_must_send_the_csrf_token(client: TestClient, make_user: Any) -> None:
    user = make_user("carol")
    csrf = login(client, "carol", user.password)
    body = {"warn_usd": "1"}
    assert client.put("/api/user/alerts", json=body).status_code == 403
    assert (
        client.put("/api/user/alerts", json=body, headers={"X-CSRF-Token": csrf}).status_code == 200
    )


def test_without_a_secret_key_urls_cannot_be_stored(
    database_url: str, database: Database, make_user: Any
) -> None:
    from quotaledger.server.app import create_app

    plain = Settings.from_env({}, database_url=database_url, admin_password=None)
    user = make_user("dave")
    with TestClient(create_app(plain, database)) as client:
        token = issue_token(client, "dave", user.password)
        answer = client.post("/api/user/alerts/urls", json={"url": "json://127.0.0.1:9/x"},
                             headers={"Authorization": token})  # fmt: skip
    assert answer.status_code == 503
    assert "QUOTALEDGER_SECRET_KEY is not set: alert notification URLs" in answer.json()["message"]


def test_an_operators_charge_crossing_a_threshold_is_told_too(
    client: TestClient, database: Database, make_user: Any, admin_token: str, inbox: Inbox
) -> None:
    """`POST /api/usage` (the operator's gateway) spends the balance as the relay does."""
    pricing.set_price(database, pricing.make_price("fixed-test", per_call_usd="6"))
    user = make_user("erin", quota=5_000_000)  # $10
    headers = {"Authorization": issue_token(client, "erin", user.password)}
    client.put("/api/user/alerts", json={"warn_usd": "5"}, headers=headers)
    client.post("/api/user/alerts/urls", json={"url": inbox.url}, headers=headers)
    charged = client.post(
        "/api/usage",
        json={"username": "erin", "model": "fixed-test", "request_id": "gateway-1"},
        headers={"Authorization": admin_token},
    )
    assert charged.status_code == 200, charged.text
    deadline = time.monotonic() + 20
    while not inbox.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert inbox.titles() == ["WARNING: Account erin is running low"]
