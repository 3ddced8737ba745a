"""POST /api/usage and top-ups: charges by price, exactly once, never below zero."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.testclient import TestClient

from quotaledger.billing import pricing
from quotaledger.store.database import Database
from quotaledger.store.tables import usage, users
from support import issue_token


def _charge(client: TestClient, admin_token: str, **body: object):  # type: ignore[no-untyped-def]
    payload = {"username": "alice", "model": "m", "request_id": "r1", **body}
    return client.post("/api/usage", json=payload, headers={"Authorization": admin_token})


def _balance(database: Database, name: str = "alice") -> tuple[int, int, int]:
    with database.read() as connection:
        row = connection.execute(
            select(users.c.quota, users.c.used_quota, users.c.request_count).where(
                users.c.username == name
            )
        ).one()
    return row.quota, row.used_quota, row.request_count


def _usage_rows(database: Database) -> int:
    with database.read() as connection:
        return int(connection.execute(select(func.count()).select_from(usage)).scalar_one())


def test_a_per_call_charge_debits_its_price(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))

    response = _charge(client, admin_token)

    assert response.status_code == 200
    assert response.json()["data"] == {
        "request_id": "r1",
        "quota_charged": 10_000,
        "quota_remaining": 990_000,
    }
    assert _balance(database) == (990_000, 10_000, 1)


def test_a_per_token_charge_rounds_up_to_whole_quota(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=1_000_000)
    pricing.set_price(
        database, pricing.make_price("m", input_usd_per_mtok="0.15", output_usd_per_mtok="0.6")
    )

    # 3 input tokens: 3 * 0.15 / 1e6 USD = 0.225 quota, charged as 1.
    response = _charge(client, admin_token, prompt_tokens=3)

    assert response.json()["data"]["quota_charged"] == 1


def test_a_group_ratio_multiplies_the_price(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=1_000_000, group="vip")
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    pricing.set_group_ratio(database, "vip", "0.5")

    assert _charge(client, admin_token).json()["data"]["quota_charged"] == 5_000


def test_replaying_a_request_id_charges_nothing_more(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))

    first = _charge(client, admin_token).json()
    second = _charge(client, admin_token).json()

    assert first == second
    assert _balance(database) == (990_000, 10_000, 1)
    assert _usage_rows(database) == 1


def test_a_request_id_replayed_with_another_payload_is_409(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    _charge(client, admin_token, prompt_tokens=1)

    response = _charge(client, admin_token, prompt_tokens=2)

    assert response.status_code == 409
    assert _balance(database) == (990_000, 10_000, 1)


def test_a_charge_above_the_balance_is_402_and_charges_nothing(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=9_999)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))

    response = _charge(client, admin_token)

    assert response.status_code == 402
    assert "insufficient quota" in response.json()["message"]
    assert _balance(database) == (9_999, 0, 0)
    assert _usage_rows(database) == 0


def test_a_charge_of_exactly_the_balance_leaves_zero(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=10_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))

    assert _charge(client, admin_token).status_code == 200
    assert _balance(database) == (0, 10_000, 1)


def test_an_unpriced_model_is_422_naming_the_field(
    client: TestClient, admin_token: str, make_user
) -> None:
    make_user("alice")

    response = _charge(client, admin_token, model="unknown-model")

    assert response.status_code == 422
    assert response.json()["message"].startswith("model:")


def test_an_unknown_user_is_404(client: TestClient, admin_token: str, database: Database) -> None:
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))

    assert _charge(client, admin_token, username="ghost").status_code == 404


def test_negative_tokens_are_422_naming_the_field(
    client: TestClient, admin_token: str, make_user
) -> None:
    make_user("alice")

    response = _charge(client, admin_token, prompt_tokens=-1)

    assert response.status_code == 422
    assert "prompt_tokens" in response.json()["message"]


def test_usage_needs_an_admin_token(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)
    client.cookies.clear()

    assert _charge(client, token).status_code == 403
    assert client.post("/api/usage", json={}).status_code == 401


def test_a_top_up_in_usd_grants_quota(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=0)

    response = client.post(
        "/api/user/alice/topup", json={"usd": "12.5"}, headers={"Authorization": admin_token}
    )

    assert response.status_code == 200
    assert response.json()["data"]["quota"] == 6_250_000
    assert _balance(database)[0] == 6_250_000


def test_a_top_up_with_both_amounts_is_422(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=0)

    response = client.post(
        "/api/user/alice/topup",
        json={"usd": "1", "quota": 5},
        headers={"Authorization": admin_token},
    )

    assert response.status_code == 422
    assert _balance(database)[0] == 0


def test_a_top_up_of_a_float_quota_is_422(client: TestClient, admin_token: str, make_user) -> None:
    make_user("alice", quota=0)

    response = client.post(
        "/api/user/alice/topup", json={"quota": 1.5}, headers={"Authorization": admin_token}
    )

    assert response.status_code == 422
    assert "quota" in response.json()["message"]


def test_log_self_lists_usage_newest_first(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    user = make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    for request_id in ("a", "b", "c"):
        _charge(client, admin_token, request_id=request_id)
    token = issue_token(client, "alice", user.password)

    data = client.get("/api/log/self?page=1&page_size=2", headers={"Authorization": token}).json()[
        "data"
    ]

    assert [item["request_id"] for item in data["items"]] == ["c", "b"]
    assert data["total"] == 3
    assert data["items"][0]["quota"] == 10_000


def test_log_self_pages_with_new_apis_p_as_well_as_page_and_ends_empty(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    user = make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    for request_id in ("a", "b", "c"):
        _charge(client, admin_token, request_id=request_id)
    token = issue_token(client, "alice", user.password)

    def page(query: str) -> dict:  # type: ignore[type-arg]
        answer = client.get(f"/api/log/self?{query}", headers={"Authorization": token})
        assert answer.status_code == 200
        return answer.json()["data"]  # type: ignore[no-any-return]

    def ids(data: dict) -> list[str]:  # type: ignore[type-arg]
        return [item["request_id"] for item in data["items"]]

    assert ids(page("p=1&page_size=2")) == ["c", "b"]
    second = page("p=2&page_size=2")
    assert ids(second) == ["a"] and second["page"] == 2 and second["total"] == 3
    assert ids(page("page=2&page_size=2")) == ["a"]
    assert ids(page("p=3&page_size=2")) == [] and page("p=3&page_size=2")["total"] == 3
    assert ids(page("p=1000000")) == []


def test_log_self_refuses_a_bad_page_size(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    response = client.get("/api/log/self?page_size=1000", headers={"Authorization": token})

    assert response.status_code == 422
    assert "page_size" in response.json()["message"]


def test_openapi_describes_the_usage_route_the_front_door_answers(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    """`POST /api/usage` has one implementation (`charges.py`, behind the front door);
    /openapi.json describes that one: its body, and its refusals."""
    make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    described = client.get("/openapi.json").json()["paths"]["/api/usage"]["post"]
    body = described["requestBody"]["content"]["application/json"]["schema"]
    admin = {"Authorization": admin_token}
    charge = {"username": "alice", "model": "m", "request_id": "r-1"}

    assert set(body["required"]) == {"username", "model", "request_id"}
    assert body["additionalProperties"] is False
    assert {"401", "402", "403", "409", "413", "415", "422", "503"} <= set(described["responses"])
    assert client.post("/api/usage", json=charge, headers=admin).status_code == 200
    assert client.post("/api/usage", json={**charge, "x": 1}, headers=admin).status_code == 422
    assert _balance(database) == (990_000, 10_000, 1)
