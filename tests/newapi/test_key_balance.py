"""An API key's own balance, asked with the key (SPEC §9): new-api's `/api/usage/token` and
OpenAI's legacy billing routes (with and without `/v1`), against recorded shapes; refusals
in the envelope under `/api`, in OpenAI's format for the billing routes."""

from __future__ import annotations

import time

import pytest
from newapi_support import price_models, relay_row
from shape import assert_shaped_like, mismatches, recorded
from starlette.testclient import TestClient

from quotaledger.identity import keys
from quotaledger.identity.keys import KeyLimits
from quotaledger.store.database import Database


@pytest.fixture
def alice_id(make_user, database: Database) -> int:  # type: ignore[no-untyped-def]
    price_models(database)
    return int(make_user("alice", quota=10_000_000).account.id)


def _key(database: Database, user_id: int, **limits: object) -> tuple[keys.ApiKey, str]:
    return keys.create_key(database, user_id, "laptop", KeyLimits(**limits))  # type: ignore[arg-type]


def _bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def test_usage_token_answers_new_apis_shape_for_a_limited_key(
    client: TestClient, alice_id: int, database: Database
) -> None:
    key, raw = _key(database, alice_id, quota=500_000, models=("gpt-test",))
    relay_row(database, key, input_tokens=100, output_tokens=50)

    answer = client.get("/api/usage/token", headers=_bearer(raw)).json()

    assert_shaped_like(answer, "token_usage", envelope_message=False)
    data = answer["data"]
    assert answer["success"] is True and answer["code"] is True
    assert data["total_used"] > 0
    assert data["total_granted"] == 500_000 == data["total_used"] + data["total_available"]
    assert data["model_limits"] == {"gpt-test": True} and data["expires_at"] == 0
    assert client.get("/api/usage/token/", headers=_bearer(raw)).json()["data"] == data


def test_an_unlimited_key_with_a_daily_limit_may_spend_what_is_left_of_the_day(
    client: TestClient, alice_id: int, database: Database
) -> None:
    key, raw = _key(database, alice_id, period="day", period_quota=100_000)
    relay_row(database, key, input_tokens=1000, output_tokens=0)

    data = client.get("/api/usage/token", headers=_bearer(raw)).json()["data"]

    used = data["total_used"]
    assert data["unlimited_quota"] is True and data["model_limits_enabled"] is False
    assert data["total_available"] == data["period_remaining"] == 100_000 - used
    assert data["period_resets_at"] > time.time() and data["account_quota"] == 10_000_000 - used


def test_a_key_limited_by_its_owners_balance_shows_the_balance(
    client: TestClient, make_user, database: Database
) -> None:
    poor = make_user("poor", quota=1_000)
    _, raw = _key(database, poor.account.id, quota=500_000)

    data = client.get("/api/usage/token", headers=_bearer(raw)).json()["data"]

    assert data["total_available"] == 1_000 and data["total_granted"] == 500_000


@pytest.mark.parametrize("prefix", ["/v1", ""])
def test_billing_routes_answer_openais_legacy_shapes_for_the_key(
    client: TestClient, alice_id: int, database: Database, prefix: str
) -> None:
    key, raw = _key(database, alice_id, quota=500_000)
    relay_row(database, key, input_tokens=100, output_tokens=50)
    used = keys.get_key(database, key.id).used_quota

    subscription = client.get(f"{prefix}/dashboard/billing/subscription", headers=_bearer(raw))
    usage = client.get(
        f"{prefix}/dashboard/billing/usage?start_date=2026-11-01&end_date=2026-12-01",
        headers=_bearer(raw),
    )

    assert mismatches(subscription.json(), recorded("billing_subscription")) == []
    assert mismatches(usage.json(), recorded("billing_usage")) == []
    assert subscription.json()["hard_limit_usd"] == 1.0  # 500,000 quota
    assert usage.json()["total_usage"] == pytest.approx(used / 500_000 * 100)


def test_refusals_are_the_envelope_under_api_and_openais_format_for_billing(
    client: TestClient, alice_id: int, database: Database
) -> None:
    key, raw = _key(database, alice_id)
    keys.delete_key(database, key.id)

    api = client.get("/api/usage/token", headers=_bearer(raw))
    billing = client.get("/v1/dashboard/billing/subscription", headers=_bearer("sk-ql-typo"))

    assert api.status_code == 401 and api.json()["success"] is False
    assert "deleted" in api.json()["message"]
    assert billing.status_code == 401
    assert billing.json()["error"]["code"] == "invalid_api_key"


def test_a_disabled_or_expired_key_still_reads_its_balance(
    client: TestClient, alice_id: int, database: Database
) -> None:
    key, raw = _key(database, alice_id, quota=1_000)
    keys.set_key_status(database, key.id, "disabled")

    data = client.get("/api/usage/token", headers=_bearer(raw)).json()["data"]

    assert data["state"] == "disabled" and data["total_granted"] == 1_000


def test_the_key_balance_is_rate_limited_per_key(
    client: TestClient, alice_id: int, database: Database
) -> None:
    _, raw = _key(database, alice_id)
    statuses = [client.get("/api/usage/token", headers=_bearer(raw)).status_code for _ in range(61)]

    assert statuses[:60] == [200] * 60 and statuses[60] == 429


def test_a_system_token_is_not_a_key_here(
    client: TestClient, alice_id: int, database: Database
) -> None:
    response = client.get("/api/usage/token", headers={"Authorization": "ql_" + "a" * 38})

    assert response.status_code == 401
    assert "sk-ql-" in response.json()["message"]
