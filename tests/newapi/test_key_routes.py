"""new-api's token routes over our API keys (SPEC §9): create (the key once), list with
`p`, get, change, enable/disable, delete, search; reveal refused (410); CSRF for sessions;
answers shaped as new-api's, with the periodic limit in every one."""

from __future__ import annotations

import time

import pytest
from newapi_support import MODEL, price_models, relay_row
from shape import assert_shaped_like
from starlette.testclient import TestClient

from quotaledger.identity import keys
from quotaledger.store.database import Database
from support import issue_token, login

NEW_API_TOKEN = {  # what new-api's web UI sends to create a token
    "name": "laptop", "remain_quota": 500000, "expired_time": -1, "unlimited_quota": False,
    "model_limits_enabled": False, "model_limits": "", "allow_ips": "", "group": "",
    "cross_group_retry": False, "auto_groups": None, "billing_type": 0,
}  # fmt: skip


@pytest.fixture
def alice(client: TestClient, make_user, database: Database) -> dict[str, str]:  # type: ignore[no-untyped-def]
    user = make_user("alice", quota=10_000_000)
    price_models(database)
    return {"Authorization": issue_token(client, "alice", user.password)}


def _create(client: TestClient, headers: dict[str, str], **fields: object) -> dict:  # type: ignore[type-arg]
    response = client.post("/api/token/", json={**NEW_API_TOKEN, **fields}, headers=headers)
    assert response.status_code == 200, response.text
    data: dict = response.json()["data"]  # type: ignore[type-arg]
    return data


def test_a_key_created_as_new_api_does_is_shown_once_then_masked(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    created = _create(client, alice)

    assert created["key"].startswith("sk-ql-") and keys.key_digest(created["key"])
    answer = client.get(f"/api/token/{created['id']}", headers=alice).json()
    assert_shaped_like(answer, "token")
    shown = answer["data"]
    assert created["key"] not in str(answer) and shown["key"].startswith("sk-ql-**********")
    assert shown["key"].endswith(created["key"][-4:])
    assert (shown["status"], shown["remain_quota"], shown["unlimited_quota"]) == (1, 500000, False)
    assert (shown["expired_time"], shown["model_limits"], shown["allow_ips"]) == (-1, "", "")


def test_every_key_answer_shows_the_periodic_limit_and_what_is_left_of_it(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    created = _create(client, alice, unlimited_quota=True, period="day", period_quota=100_000)
    key = keys.get_key(database, created["id"])
    relay_row(database, key, input_tokens=1000, output_tokens=0)

    shown = client.get(f"/api/token/{created['id']}", headers=alice).json()["data"]
    listed = client.get("/api/token/?p=1", headers=alice).json()["data"]["items"][0]

    for answer in (created, shown, listed):
        assert (answer["period"], answer["period_quota"]) == ("day", 100_000)
        assert answer["period_resets_at"] % 86_400 == 0 and answer["period_resets_at"] > time.time()
    assert shown["period_used"] == listed["period_used"] == shown["used_quota"] > 0
    assert shown["period_remaining"] == 100_000 - shown["period_used"]
    assert shown["request_count"] == 1


def test_keys_page_with_p_newest_first_and_the_paging_ends(
    client: TestClient, alice: dict[str, str]
) -> None:
    ids = [_create(client, alice, name=f"k{i}")["id"] for i in range(5)]

    pages = [client.get(f"/api/token/?p={p}&size=2", headers=alice).json() for p in (1, 2, 3, 4)]

    assert_shaped_like(pages[0], "token_list")
    seen = [item["id"] for answer in pages for item in answer["data"]["items"]]
    assert seen == ids[::-1]
    assert [len(a["data"]["items"]) for a in pages] == [2, 2, 1, 0]
    assert pages[0]["data"]["total"] == 5 and pages[0]["data"]["page_size"] == 2


def test_a_put_changes_the_fields_it_sends_and_ignores_new_apis_extras(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    created = _create(client, alice, period="month", period_quota=50_000)
    expires = int(time.time()) + 86_400
    change = {
        **NEW_API_TOKEN, "id": created["id"], "name": "renamed", "remain_quota": 7_000,
        "expired_time": expires, "model_limits_enabled": True, "model_limits": f"{MODEL},other",
        "allow_ips": "10.0.0.0/8\n192.168.1.1", "group": "default",
    }  # fmt: skip

    answer = client.put("/api/token/", json=change, headers=alice).json()["data"]

    assert (answer["name"], answer["remain_quota"], answer["expired_time"]) == (
        "renamed", 7_000, expires,
    )  # fmt: skip
    assert answer["model_limits_enabled"] and answer["model_limits"] == f"{MODEL},other"
    assert answer["allow_ips"] == "10.0.0.0/8\n192.168.1.1/32" and answer["group"] == "default"
    assert (answer["period"], answer["period_quota"]) == ("month", 50_000)  # not sent: kept
    key = keys.get_key(database, created["id"])
    assert key.granted_quota - key.used_quota == key.remain_quota == 7_000


def test_status_only_disables_and_enables_a_key(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    created = _create(client, alice)

    off = client.put("/api/token/?status_only=true", json={"id": created["id"], "status": 2},
                     headers=alice).json()["data"]  # fmt: skip
    assert off["status"] == 2 and keys.get_key(database, created["id"]).status == "disabled"
    on = client.put("/api/token/?status_only=true", json={"id": created["id"], "status": 1},
                    headers=alice).json()["data"]  # fmt: skip
    assert on["status"] == 1


def test_expired_and_exhausted_keys_show_new_apis_statuses(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    exhausted = _create(client, alice, remain_quota=0)
    expiring = _create(client, alice, expired_time=int(time.time()) + 2)
    time.sleep(2.1)

    listed = client.get("/api/token/", headers=alice).json()["data"]["items"]
    statuses = {item["id"]: item["status"] for item in listed}

    assert statuses[exhausted["id"]] == 4
    assert statuses[expiring["id"]] == 3


def test_deleted_keys_are_gone_one_at_a_time_or_in_a_batch(
    client: TestClient, alice: dict[str, str]
) -> None:
    ids = [_create(client, alice, name=f"k{i}")["id"] for i in range(3)]

    assert client.delete(f"/api/token/{ids[0]}", headers=alice).json()["success"]
    answer = client.post("/api/token/batch", json={"ids": ids}, headers=alice).json()

    assert answer["data"] == 2
    assert client.get(f"/api/token/{ids[0]}", headers=alice).status_code == 404
    assert client.get("/api/token/", headers=alice).json()["data"]["total"] == 0


def test_search_finds_a_key_by_name_or_by_the_whole_key(
    client: TestClient, alice: dict[str, str]
) -> None:
    laptop = _create(client, alice, name="laptop")
    _create(client, alice, name="phone")

    by_name = client.get("/api/token/search?keyword=lap%25", headers=alice).json()["data"]
    by_key = client.get(f"/api/token/search?token={laptop['key']}", headers=alice).json()["data"]

    partial = client.get(f"/api/token/search?token={laptop['key'][:12]}", headers=alice)

    assert [item["id"] for item in by_name["items"]] == [laptop["id"]]
    assert [item["id"] for item in by_key["items"]] == [laptop["id"]]
    assert partial.status_code == 200 and partial.json()["data"]["items"] == []


def test_another_users_key_is_not_found(
    client: TestClient, alice: dict[str, str], make_user
) -> None:
    created = _create(client, alice)
    bob = make_user("bob")
    bob_token = {"Authorization": issue_token(client, "bob", bob.password)}

    assert client.get(f"/api/token/{created['id']}", headers=bob_token).status_code == 404
    response = client.put("/api/token/?status_only=1", json={"id": created["id"], "status": 2},
                          headers=bob_token)  # fmt: skip
    assert response.status_code == 404
    assert client.delete(f"/api/token/{created['id']}", headers=bob_token).status_code == 404


def test_revealing_a_key_is_refused_with_the_reason(
    client: TestClient, alice: dict[str, str]
) -> None:
    created = _create(client, alice)

    for path, body in ((f"/api/token/{created['id']}/key", None),
                       ("/api/token/batch/keys", {"ids": [created["id"]]})):  # fmt: skip
        response = client.post(path, json=body, headers=alice)
        assert response.status_code == 410
        assert "shown once" in response.json()["message"]


def test_bad_key_fields_are_refused_naming_them(client: TestClient, alice: dict[str, str]) -> None:
    for fields, named in (({"remain_quota": -1}, "remain_quota"), ({"name": ""}, "name"),
                          ({"allow_ips": "not-an-ip"}, "networks"),
                          ({"group": "vip"}, "group"),
                          ({"period": "week", "period_quota": 5}, "period")):  # fmt: skip
        response = client.post("/api/token/", json={**NEW_API_TOKEN, **fields}, headers=alice)
        assert response.status_code == 422, fields
        assert named in response.json()["message"]


def test_a_session_needs_the_csrf_header_to_change_keys(client: TestClient, make_user) -> None:
    user = make_user("carol")
    csrf = login(client, "carol", user.password)

    refused = client.post("/api/token/", json=NEW_API_TOKEN)
    created = client.post("/api/token/", json=NEW_API_TOKEN, headers={"X-CSRF-Token": csrf})

    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]
    assert created.status_code == 200
    assert client.get("/api/token/").json()["data"]["total"] == 1  # reading needs none
