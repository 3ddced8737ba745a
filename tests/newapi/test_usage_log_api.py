"""new-api's log routes (SPEC §9): `/api/log/self` with `p`, filters and every token class,
`/api/log/self/stat`, `/api/data/self`, against new-api's recorded answer shapes."""

from __future__ import annotations

import time

import pytest
from newapi_support import FIXED, MODEL, admin_row, make_key, price_models, relay_row
from shape import assert_shaped_like
from starlette.testclient import TestClient

from quotaledger.store.database import Database
from quotaledger.store.tables import usage
from support import issue_token


@pytest.fixture
def alice(client: TestClient, make_user, database: Database) -> dict[str, str]:  # type: ignore[no-untyped-def]
    user = make_user("alice", quota=10_000_000)
    price_models(database)
    return {"Authorization": issue_token(client, "alice", user.password)}


def test_log_rows_of_the_relay_and_of_admin_charges_have_new_apis_fields(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    key = make_key(database, 1 + 1, "laptop")  # alice is user 2 (the admin is 1)
    relayed = relay_row(database, key)
    charged = admin_row(database, "alice")

    answer = client.get("/api/log/self?p=1&page_size=10", headers=alice).json()

    assert_shaped_like(answer, "log_self")
    admin, relay = answer["data"]["items"]
    assert (admin["request_id"], relay["request_id"]) == (charged, relayed)
    assert relay["token_name"] == "laptop" and admin["token_name"] == ""
    assert (relay["type"], relay["model_name"], relay["channel_name"]) == (2, MODEL, "main")
    assert (relay["prompt_tokens"], relay["completion_tokens"]) == (110, 50)
    assert (relay["cached_tokens"], relay["use_time"], relay["is_stream"]) == (10, 2, True)
    assert relay["quota_reserved"] == 10_000 and relay["quota_written_off"] == 0
    assert relay["quota_charged"] == relay["quota"] > 0
    assert (relay["usage_source"], relay["end_reason"], relay["ttft_ms"]) == (
        "upstream",
        "stop",
        250,
    )
    assert (admin["model_name"], admin["quota"], admin["status"]) == (FIXED, 10_000, 200)
    # Claude Code's X-Claude-Code-Session-Id, recorded on the row, is returned (issue 22).
    assert (relay["session_id"], admin["session_id"]) == ("6f1c2a9e-claude-code-session", None)
    assert (relay["usage_note"], relay["web_search_calls"], relay["price_tier"]) == (None, 0, None)


def test_paging_with_p_ends_with_an_empty_page(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    for _ in range(5):
        admin_row(database, "alice")
    seen: list[str] = []
    for p in range(1, 10):
        data = client.get(f"/api/log/self?p={p}&page_size=2", headers=alice).json()["data"]
        assert (data["page"], data["page_size"], data["total"]) == (p, 2, 5)
        seen += [item["request_id"] for item in data["items"]]
        if len(data["items"]) < 2:
            break
    assert p == 3 and len(seen) == len(set(seen)) == 5
    assert (
        client.get("/api/log/self?page=9&page_size=2", headers=alice).json()["data"]["items"] == []
    )


def test_log_filters_by_new_apis_parameters(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    laptop, phone = make_key(database, 2, "laptop"), make_key(database, 2, "phone")
    first = relay_row(database, laptop)
    relay_row(database, phone)
    failed = relay_row(database, phone, status=502, input_tokens=0, output_tokens=0)
    admin_row(database, "alice")

    def ids(query: str) -> list[str]:
        items = client.get(f"/api/log/self?{query}", headers=alice).json()["data"]["items"]
        return [item["request_id"] for item in items]

    assert ids("token_name=laptop") == [first]
    assert ids("type=5") == [failed]
    assert len(ids("type=2")) == 3
    assert ids("type=1") == []  # top-ups are not usage rows
    assert len(ids(f"model_name={MODEL}")) == 3 and len(ids("model_name=gpt%25")) == 3
    assert ids(f"request_id={first}") == [first]
    assert len(ids("group=default")) == 4 and ids("group=vip") == []
    assert ids(f"start_timestamp={int(time.time()) + 3600}") == []
    assert len(ids(f"end_timestamp={int(time.time()) + 3600}")) == 4


def test_log_refuses_bad_filters_naming_them(client: TestClient, alice: dict[str, str]) -> None:
    for query, field in (("type=9", "type"), ("page_size=1000", "page_size"), ("p=0", "p"),
                         ("start_timestamp=5&end_timestamp=4", "start_timestamp")):  # fmt: skip
        response = client.get(f"/api/log/self?{query}", headers=alice)
        assert response.status_code == 422, query
        assert field in response.json()["message"]


def test_log_stat_sums_quota_over_the_filters_and_counts_the_last_minute(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    laptop = make_key(database, 2, "laptop")
    relay_row(database, laptop, input_tokens=100, output_tokens=50)
    relay_row(database, laptop, input_tokens=100, output_tokens=50)
    admin_row(database, "alice")
    with database.write() as connection:  # an old row: in the quota, not in rpm/tpm
        connection.execute(usage.update().where(usage.c.id == 1).values(created_at=1_000))

    answer = client.get("/api/log/self/stat?type=2&token_name=laptop", headers=alice).json()

    assert_shaped_like(answer, "log_self_stat")
    assert answer["data"]["quota"] > 0 and answer["data"]["rpm"] == 1
    assert answer["data"]["tpm"] == 160  # 110 prompt (10 cached) + 50 completion tokens
    everything = client.get("/api/log/self/stat", headers=alice).json()["data"]
    assert everything["quota"] == answer["data"]["quota"] + 10_000


def test_data_self_buckets_usage_per_hour_and_model(
    client: TestClient, alice: dict[str, str], database: Database
) -> None:
    laptop = make_key(database, 2)
    relay_row(database, laptop)
    relay_row(database, laptop)
    relay_row(database, laptop, status=502, input_tokens=0, output_tokens=0)
    admin_row(database, "alice")
    now = int(time.time())

    answer = client.get(
        f"/api/data/self?start_timestamp={now - 3600}&end_timestamp={now + 60}", headers=alice
    ).json()

    assert_shaped_like(answer, "data_self")
    rows = {row["model_name"]: row for row in answer["data"]}
    assert rows[MODEL]["count"] == 2 and rows[MODEL]["token_used"] == 2 * 160
    assert rows[MODEL]["created_at"] % 3600 == 0 and rows[MODEL]["created_at"] > now - 7200
    assert rows[FIXED]["quota"] == 10_000 and rows[FIXED]["token_used"] == 7


def test_data_self_refuses_more_than_thirty_days(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get("/api/data/self?start_timestamp=0&end_timestamp=9999999", headers=alice)

    assert response.status_code == 422
    assert "30 days" in response.json()["message"]


def test_the_log_needs_credentials(client: TestClient) -> None:
    for path in ("/api/log/self", "/api/log/self/stat", "/api/data/self"):
        assert client.get(path).status_code == 401
