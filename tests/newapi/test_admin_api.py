"""The admin API (SPEC §13) against a real app and database: new-api's answer shapes, the
ledger entries of grants and deductions, passwords and sessions, write-only channel keys,
the logs of every user, and the audit entry of every write."""

from __future__ import annotations

import pytest
from admin_support import admin_app, channel_body, fake_upstream
from newapi_support import MODEL, make_key, price_models, relay_row
from shape import assert_shaped_like
from starlette.testclient import TestClient

from quotaledger.billing import audit as invariant
from quotaledger.identity import accounts
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from support import ADMIN_PASSWORD, issue_token, login

UPSTREAM_KEY = "sk-upstream-secret-0042"


@pytest.fixture
def api(settings: Settings, database: Database):  # type: ignore[no-untyped-def]
    with admin_app(settings, database) as client:
        yield client


@pytest.fixture
def admin(api: TestClient) -> dict[str, str]:
    """Headers of the admin's session (the CSRF token); the cookie is in the client."""
    return {"X-CSRF-Token": login(api, "admin", ADMIN_PASSWORD)}


def _audit(api: TestClient, headers: dict[str, str], **query: str) -> list[dict[str, object]]:
    answer = api.get("/api/audit/", params={"page_size": 100, **query}, headers=headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, object]] = answer.json()["data"]["items"]
    return items


# ------------------------------------------------------------------ channels


def test_channels_answer_in_new_apis_shapes_and_never_with_their_key(
    api: TestClient, admin: dict[str, str]
) -> None:
    with fake_upstream() as upstream:
        added = api.post(
            "/api/channel/", json=channel_body(upstream.base_url + "/v1"), headers=admin
        )
        assert added.status_code == 200, added.text
        channel_id = added.json()["data"]["id"]
        tested = api.get(f"/api/channel/test/{channel_id}", headers=admin)
        listed = api.get("/api/channel/", params={"p": 1, "page_size": 10}, headers=admin)
        one = api.get(f"/api/channel/{channel_id}", headers=admin)

    assert_shaped_like(listed.json(), "channel_list")
    assert_shaped_like(tested.json(), "channel_test")
    assert tested.json()["success"] is True and tested.json()["data"]["status"] == 200
    assert listed.json()["data"]["items"][0]["api_key_hint"] == "…0042"
    for answer in (added, tested, listed, one, api.get("/api/audit/", headers=admin)):
        assert UPSTREAM_KEY not in answer.text
        assert answer.json().get("data") is not None


def test_a_channel_test_against_a_dead_upstream_says_why(
    api: TestClient, admin: dict[str, str]
) -> None:
    body = channel_body("http://127.0.0.1:9/v1")  # discard port: nothing listens
    channel_id = api.post("/api/channel/", json=body, headers=admin).json()["data"]["id"]

    answer = api.get(f"/api/channel/test/{channel_id}", headers=admin).json()

    assert answer["success"] is False
    assert "unreachable" in answer["message"]
    assert UPSTREAM_KEY not in answer["message"]


def test_editing_a_channel_keeps_its_key_unless_a_new_one_is_sent(
    api: TestClient, admin: dict[str, str]
) -> None:
    channel = api.post(
        "/api/channel/", json=channel_body("https://up.example/v1"), headers=admin
    ).json()["data"]

    kept = api.put(
        "/api/channel/",
        json={"id": channel["id"], "priority": 5, "key": "", "weight": 3},
        headers=admin,
    ).json()["data"]
    changed = api.put(
        "/api/channel/", json={"id": channel["id"], "key": "sk-new-key-999999"}, headers=admin
    ).json()["data"]
    disabled = api.put(
        "/api/channel/", json={"id": channel["id"], "status": 2}, headers=admin
    ).json()["data"]

    assert (kept["priority"], kept["weight"], kept["api_key_hint"]) == (5, 3, "…0042")
    assert changed["api_key_hint"] == "…9999"
    assert disabled["status"] == 2 and disabled["state"] == "disabled"
    actions = [entry["action"] for entry in _audit(api, admin, action="channel.")]
    assert actions == ["channel.edit", "channel.edit", "channel.edit", "channel.add"]
    assert "sk-new-key-999999" not in str(_audit(api, admin))


def test_a_channel_takes_every_format_the_relay_knows_by_name(
    api: TestClient, admin: dict[str, str]
) -> None:
    from quotaledger.relay.providers import FORMATS

    for number, name in enumerate(FORMATS):
        body = channel_body("https://up.example/v1", name=f"c{number}", format=name)
        answer = api.post("/api/channel/", json=body, headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["format"] == name
    refused = api.post(
        "/api/channel/",
        json=channel_body("https://x.example", name="bad", format="telex"),
        headers=admin,
    )
    assert refused.status_code == 422 and "format" in refused.json()["message"]


def test_deleting_a_channel_removes_it(api: TestClient, admin: dict[str, str]) -> None:
    channel_id = api.post(
        "/api/channel/", json=channel_body("https://up.example/v1"), headers=admin
    ).json()["data"]["id"]

    assert api.delete(f"/api/channel/{channel_id}", headers=admin).status_code == 200

    assert api.get(f"/api/channel/{channel_id}", headers=admin).status_code == 404
    assert _audit(api, admin)[0]["action"] == "channel.delete"


# ------------------------------------------------------------------ users


def test_users_list_and_search_in_new_apis_shapes(
    api: TestClient, admin: dict[str, str], make_user
) -> None:
    make_user("alice")
    make_user("bob")

    listed = api.get("/api/user/", params={"p": 1, "page_size": 2}, headers=admin).json()
    found = api.get("/api/user/search", params={"keyword": "ali"}, headers=admin).json()

    assert_shaped_like(listed, "user_list")
    assert listed["data"]["total"] == 3 and len(listed["data"]["items"]) == 2
    assert [u["username"] for u in found["data"]["items"]] == ["alice"]


def test_manage_disables_enables_promotes_and_demotes(
    api: TestClient, admin: dict[str, str], make_user
) -> None:
    alice = make_user("alice").account
    seen = {}
    for action in ("disable", "enable", "promote", "demote"):
        answer = api.post(
            "/api/user/manage", json={"id": alice.id, "action": action}, headers=admin
        ).json()
        assert_shaped_like(answer, "user_manage")
        seen[action] = (answer["data"]["role"], answer["data"]["status"])

    assert seen == {"disable": (1, 2), "enable": (1, 1), "promote": (10, 1), "demote": (1, 1)}
    actions = [e["action"] for e in _audit(api, admin, action="user.")]
    assert actions == ["user.demote", "user.promote", "user.enable", "user.disable"]


def test_an_admin_cannot_demote_or_disable_themselves(
    api: TestClient, admin: dict[str, str], database: Database
) -> None:
    me = accounts.find_account(database, "admin").id
    for action in ("demote", "disable", "delete"):
        answer = api.post("/api/user/manage", json={"id": me, "action": action}, headers=admin)
        assert answer.status_code in (403, 422), answer.text
    assert accounts.find_account(database, "admin").is_admin


def test_deleting_a_user_with_ledger_history_is_refused(
    api: TestClient, admin: dict[str, str], make_user
) -> None:
    rich = make_user("rich", quota=1000).account
    empty = make_user("empty", quota=0).account

    refused = api.post("/api/user/manage", json={"id": rich.id, "action": "delete"}, headers=admin)
    deleted = api.post("/api/user/manage", json={"id": empty.id, "action": "delete"}, headers=admin)

    assert refused.status_code == 409 and "disable" in refused.json()["message"]
    assert deleted.status_code == 200
    assert api.get(f"/api/user/{empty.id}", headers=admin).status_code == 404


def test_creating_a_user_without_a_password_shows_a_random_one_once(
    api: TestClient, admin: dict[str, str], database: Database
) -> None:
    created = api.post("/api/user/", json={"username": "carol", "quota": 5000}, headers=admin)

    data = created.json()["data"]
    assert created.status_code == 200 and data["quota"] == 5000
    assert accounts.authenticate(database, "carol", data["password"]).id == data["id"]
    assert "password" not in api.get(f"/api/user/{data['id']}", headers=admin).json()["data"]


def test_a_grant_and_a_deduction_are_ledger_entries_with_their_reason(
    api: TestClient, admin: dict[str, str], make_user, database: Database
) -> None:
    alice = make_user("alice", quota=1_000_000).account

    granted = api.post(
        "/api/user/grant",
        json={"id": alice.id, "quota": 250_000, "reason": "support ticket 12"},
        headers=admin,
    )
    deducted = api.post(
        "/api/user/grant",
        json={"id": alice.id, "usd": "-0.5", "reason": "refund reversed"},
        headers=admin,
    )
    too_much = api.post(
        "/api/user/grant", json={"id": alice.id, "quota": -(10**9), "reason": "oops"}, headers=admin
    )
    no_reason = api.post(
        "/api/user/grant", json={"id": alice.id, "quota": 5, "reason": "  "}, headers=admin
    )

    assert granted.json()["data"]["quota"] == 1_250_000
    assert deducted.json()["data"]["quota"] == 1_000_000
    assert too_much.status_code == 422 and no_reason.status_code == 422
    assert accounts.find_account(database, "alice").quota == 1_000_000
    ledger = api.get(f"/api/user/{alice.id}", headers=admin).json()["data"]["ledger"]
    assert [(e["quota"], e["note"]) for e in ledger[:2]] == [
        (-250_000, "refund reversed (by admin)"),
        (250_000, "support ticket 12 (by admin)"),
    ]
    assert invariant.check_invariant(database) == []
    entries = _audit(api, admin, action="user.")
    assert [(e["action"], e["detail"]["quota"]) for e in entries] == [
        ("user.deduct", -250_000),
        ("user.grant", 250_000),
    ]


def test_resetting_a_password_ends_every_session_of_that_user(
    settings: Settings, database: Database, make_user
) -> None:
    alice = make_user("alice")
    with admin_app(settings, database) as admin_client, admin_app(settings, database) as browser:
        headers = {"X-CSRF-Token": login(admin_client, "admin", ADMIN_PASSWORD)}
        login(browser, "alice", alice.password)
        assert browser.get("/api/log/self").status_code == 200

        reset = admin_client.post(
            "/api/user/reset_password", json={"id": alice.account.id}, headers=headers
        )

        new_password = reset.json()["data"]["password"]
        assert browser.get("/api/log/self").status_code == 401
        assert (
            browser.post(
                "/api/user/login", json={"username": "alice", "password": alice.password}
            ).status_code
            == 401
        )
        login(browser, "alice", new_password)


# ------------------------------------------------------------------ own password


def test_changing_ones_password_needs_the_current_one_and_ends_other_sessions(
    settings: Settings, database: Database, make_user
) -> None:
    alice = make_user("alice")
    with admin_app(settings, database) as here, admin_app(settings, database) as elsewhere:
        csrf = login(here, "alice", alice.password)
        login(elsewhere, "alice", alice.password)
        body = {"original_password": "wrong-password-1", "password": "a-new-password-42"}

        wrong = here.put("/api/user/self", json=body, headers={"X-CSRF-Token": csrf})
        no_csrf = here.put("/api/user/self", json={**body, "original_password": alice.password})
        right = here.put(
            "/api/user/self",
            json={**body, "original_password": alice.password},
            headers={"X-CSRF-Token": csrf},
        )

        assert (wrong.status_code, no_csrf.status_code, right.status_code) == (401, 403, 200)
        assert right.json()["data"]["sessions_ended"] == 1
        assert here.get("/api/log/self").status_code == 200
        assert elsewhere.get("/api/log/self").status_code == 401
        login(elsewhere, "alice", "a-new-password-42")


# ------------------------------------------------------------------ codes, keys, logs


def test_redemption_codes_are_shown_once_then_listed_by_hint(
    api: TestClient, admin: dict[str, str]
) -> None:
    created = api.post(
        "/api/redemption/", json={"name": "launch", "count": 3, "quota": 500_000}, headers=admin
    ).json()
    codes = created["data"]
    first = api.get("/api/redemption/", params={"p": 1, "page_size": 10}, headers=admin).json()
    code_id = first["data"]["items"][0]["id"]
    disabled = api.put(
        "/api/redemption/?status_only=true", json={"id": code_id, "status": 2}, headers=admin
    ).json()

    assert_shaped_like(created, "redemption_create")
    assert_shaped_like(first, "redemption_list")
    assert len(codes) == 3 and all(code.startswith("qlr-") for code in codes)
    listed = api.get("/api/redemption/", headers=admin).text
    assert not any(code in listed for code in codes)
    assert disabled["data"]["state"] == "disabled"
    assert [e["action"] for e in _audit(api, admin, action="redemption.")] == [
        "redemption.disable",
        "redemption.create",
    ]
    assert not any(code in str(_audit(api, admin)) for code in codes)


def test_every_users_keys_can_be_found_and_disabled(
    api: TestClient, admin: dict[str, str], make_user, database: Database
) -> None:
    alice = make_user("alice").account
    key = make_key(database, alice.id, "laptop")

    found = api.get("/api/admin/keys/", params={"keyword": "alice"}, headers=admin).json()
    disabled = api.put("/api/admin/keys/", json={"id": key.id, "status": 2}, headers=admin)

    assert [(k["username"], k["name"]) for k in found["data"]["items"]] == [("alice", "laptop")]
    assert disabled.json()["data"]["state"] == "disabled"
    assert _audit(api, admin)[0]["target"] == "alice/laptop"


def test_every_users_log_with_filters_in_new_apis_shapes(
    api: TestClient, admin: dict[str, str], make_user, database: Database
) -> None:
    price_models(database)
    alice, bob = make_user("alice").account, make_user("bob").account
    relay_row(database, make_key(database, alice.id))
    relay_row(database, make_key(database, bob.id), status=429)

    every = api.get("/api/log/", params={"p": 1, "page_size": 10}, headers=admin).json()
    by_user = api.get("/api/log/", params={"username": "bob"}, headers=admin).json()
    by_status = api.get("/api/log/", params={"status": "4xx"}, headers=admin).json()
    by_channel = api.get("/api/log/", params={"channel": "nowhere"}, headers=admin).json()
    stat = api.get("/api/log/stat", params={"model_name": MODEL}, headers=admin).json()
    csv = api.get("/api/log/export.csv", params={"username": "alice"}, headers=admin)

    assert_shaped_like(every, "log_list")
    assert_shaped_like(stat, "log_stat")
    assert every["data"]["total"] == 2
    assert [r["username"] for r in by_user["data"]["items"]] == ["bob"]
    assert [r["status"] for r in by_status["data"]["items"]] == [429]
    assert by_channel["data"]["total"] == 0
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("username,") and len(lines) == 2 and lines[1].startswith("alice,")
    bad = api.get("/api/log/", params={"status": "abc"}, headers=admin)
    assert bad.status_code == 422 and "status" in bad.json()["message"]


def test_the_dashboard_counts_requests_tokens_quota_and_errors(
    api: TestClient, admin: dict[str, str], make_user, database: Database
) -> None:
    price_models(database)
    key = make_key(database, make_user("alice").account.id)
    relay_row(database, key, input_tokens=100, output_tokens=50)
    relay_row(database, key, status=502, input_tokens=0, output_tokens=0)

    data = api.get("/api/admin/dashboard", params={"days": 1}, headers=admin).json()["data"]

    assert data["totals"]["requests"] == 2 and data["totals"]["errors"] == 1
    assert data["errors_by_class"] == {"429": 0, "4xx": 0, "5xx": 1}
    assert [row["key"] for row in data["by_model"]] == [MODEL]
    assert data["by_channel"][0]["key"] == "main"
    assert sum(row["quota"] for row in data["by_day"]) == data["totals"]["quota"] > 0


def test_prices_and_group_ratios_are_set_with_every_field(
    api: TestClient, admin: dict[str, str]
) -> None:
    body = {
        "model": "claude-x",
        "input_usd_per_mtok": "3",
        "output_usd_per_mtok": "15",
        "cache_read_usd_per_mtok": "0.3",
        "cache_write_usd_per_mtok": "3.75",
        "cache_write_1h_usd_per_mtok": "6",
        "long_context_threshold": 200_000,
        "long_input_usd_per_mtok": "6",
        "long_output_usd_per_mtok": "22.5",
        "long_cache_read_usd_per_mtok": None,
        "long_cache_write_usd_per_mtok": None,
        "long_cache_write_1h_usd_per_mtok": None,
        "web_search_usd_per_kcall": "10",
        "max_output_tokens": 64_000,
    }
    assert api.put("/api/admin/prices/", json=body, headers=admin).status_code == 200
    assert (
        api.put(
            "/api/admin/groups/", json={"name": "vip", "ratio": "0.8"}, headers=admin
        ).status_code
        == 200
    )

    listed = api.get("/api/admin/prices/", headers=admin).json()["data"]

    assert listed["models"] == [{**body, "per_call_usd": None}]
    assert listed["group_ratios"]["vip"] == "0.8"
    assert (
        api.delete("/api/admin/prices/", params={"model": "claude-x"}, headers=admin).status_code
        == 200
    )
    actions = [e["action"] for e in _audit(api, admin)]
    assert actions == ["price.delete", "group.set", "price.set"]


def test_the_audit_entry_says_who_what_when_and_from_where(
    api: TestClient, admin: dict[str, str], make_user
) -> None:
    alice = make_user("alice").account
    api.post("/api/user/manage", json={"id": alice.id, "action": "disable"}, headers=admin)

    [entry] = _audit(api, admin)

    assert (entry["actor"], entry["action"], entry["target"]) == ("admin", "user.disable", "alice")
    assert entry["address"] == "testclient" and entry["created_at"] > 0


def test_a_token_works_as_well_as_a_session(api: TestClient, make_user) -> None:
    token = issue_token(api, "admin", ADMIN_PASSWORD)
    api.cookies.clear()

    answer = api.post("/api/user/", json={"username": "dora"}, headers={"Authorization": token})

    assert answer.status_code == 200, answer.text
