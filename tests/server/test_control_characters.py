"""Control characters (NUL above all: PostgreSQL refuses it in text and answered 500) and
unpaired surrogates in the text fields of the API are refused with 422 naming the field,
on both databases, before anything is read or written."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from quotaledger.billing import ledger, pricing
from quotaledger.errors import InvalidInput
from quotaledger.store.database import Database
from support import check_invariant, issue_token

BAD_TEXT = {
    "nul": "ali\x00ce",
    "escape": "ali\x1b]0;pwned\x07ce",
    "newline": "ali\nce",
    "delete": "ali\x7fce",
    "c1": "ali\x85ce",
}


@pytest.fixture
def priced(database: Database, make_user) -> Database:  # type: ignore[no-untyped-def]
    make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    return database


def _post_json(client: TestClient, path: str, payload: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    # json.dumps escapes the characters as \u0000 and so on, as any client would send them.
    body = json.dumps(payload)
    return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("field", ["username", "model", "request_id"])
@pytest.mark.parametrize("text", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_a_charge_with_a_control_character_is_422_naming_the_field(
    client: TestClient, admin_token: str, priced: Database, field: str, text: str
) -> None:
    payload = {"username": "alice", "model": "m", "request_id": "r1", field: text}

    response = _post_json(client, "/api/usage", payload, Authorization=admin_token)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{field}: ")
    assert "control character" in response.json()["message"]
    check_invariant(priced)


@pytest.mark.parametrize("field", ["username", "model", "request_id"])
def test_a_charge_with_an_unpaired_surrogate_is_422(
    client: TestClient, admin_token: str, priced: Database, field: str
) -> None:
    payload = {"username": "alice", "model": "m", "request_id": "r1", field: "ali\ud800ce"}

    response = _post_json(client, "/api/usage", payload, Authorization=admin_token)

    assert response.status_code == 422, response.text  # the JSON parser refuses it already
    check_invariant(priced)


@pytest.mark.parametrize("field", ["username", "model", "request_id"])
def test_the_ledger_refuses_an_unpaired_surrogate_naming_the_field(field: str) -> None:
    values = {"username": "alice", "model": "m", "request_id": "r1", field: "ali\udc00ce"}

    with pytest.raises(InvalidInput) as refused:
        ledger.UsageRequest(**values).validate()

    assert refused.value.field == field
    assert "unpaired surrogate" in str(refused.value)


def test_a_refused_charge_does_not_fail_the_others_in_its_batch(priced: Database) -> None:
    good = ledger.UsageRequest("alice", "m", "good")
    bad = ledger.UsageRequest("alice", "m", "bad\x00")

    outcomes = ledger.charge_batch(priced, [bad, good])

    assert isinstance(outcomes[0], InvalidInput)
    assert outcomes[0].field == "request_id"
    assert isinstance(outcomes[1], ledger.Charge)
    assert outcomes[1].quota_charged == 10_000
    check_invariant(priced)


@pytest.mark.parametrize("text", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_a_login_with_a_control_character_in_the_username_is_422(
    client: TestClient, make_user, text: str
) -> None:
    make_user("alice")

    response = _post_json(
        client, "/api/user/login", {"username": text, "password": "alice-password-123"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("username: ")
    assert "ql_session" not in response.cookies


# (A line break in the path matches no route at all: 404.)
@pytest.mark.parametrize("text", ["ali%00ce", "ali%1Bce", "ali%7Fce", "ali%C2%85ce"])
def test_a_top_up_of_a_username_with_a_control_character_is_422(
    client: TestClient, admin_token: str, priced: Database, text: str
) -> None:
    response = client.post(
        f"/api/user/{text}/topup", json={"quota": 5}, headers={"Authorization": admin_token}
    )

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("username: ")
    check_invariant(priced)


def test_plain_unicode_is_still_accepted(
    client: TestClient, admin_token: str, priced: Database
) -> None:
    pricing.set_price(priced, pricing.make_price("modèle-☃", per_call_usd="0.02"))
    payload = {"username": "alice", "model": "modèle-☃", "request_id": "запрос-1 «x»"}

    response = _post_json(client, "/api/usage", payload, Authorization=admin_token)

    assert response.status_code == 200, response.text


# ---------------------------------------------- every text field and filter (issue 25 item 5)


@pytest.fixture
def alice_token(client: TestClient, make_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    user = make_user("alice")
    return {"Authorization": issue_token(client, "alice", user.password)}


@pytest.mark.parametrize("text", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_a_key_name_with_a_control_character_is_422_naming_the_field(
    client: TestClient, alice_token: dict[str, str], text: str
) -> None:
    response = _post_json(client, "/api/token/", {"name": text}, **alice_token)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("name: must not contain a control character")
    assert client.get("/api/token/", headers=alice_token).json()["data"]["items"] == []


@pytest.mark.parametrize(
    "path", ["/api/log/self", "/api/log/self/stat", "/api/log/self/export.csv", "/api/token/search"]
)
@pytest.mark.parametrize("text", ["ali%00ce", "ali%1B[2Jce", "ali%0Ace", "ali%C2%85ce"])
def test_a_filter_with_a_control_character_is_422_naming_it(
    client: TestClient, alice_token: dict[str, str], path: str, text: str
) -> None:
    name = "keyword" if path.endswith("search") else "model_name"

    response = client.get(f"{path}?{name}={text}", headers=alice_token)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{name}: must not contain a control character")


def test_a_query_parameter_named_with_a_control_character_is_422(
    client: TestClient, alice_token: dict[str, str]
) -> None:
    response = client.get("/api/log/self?mo%00del=x", headers=alice_token)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("query: ")
    assert "\x00" not in response.text


def test_a_nested_field_and_a_key_are_named_by_their_path(
    client: TestClient, admin_token: str, priced: Database
) -> None:
    payload = {"username": "alice", "model": "m", "request_id": "r1", "extra": {"a\x00": 1}}

    response = _post_json(client, "/api/usage", payload, Authorization=admin_token)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("extra: must not contain a control character")
    check_invariant(priced)


def test_new_apis_line_separated_lists_keep_their_line_breaks(
    client: TestClient, alice_token: dict[str, str]
) -> None:
    body = {"name": "laptop", "allow_ips": "10.0.0.1\n10.0.0.2", "model_limits": "a,\r\nb"}

    response = _post_json(client, "/api/token/", body, **alice_token)
    nul = _post_json(client, "/api/token/", {**body, "allow_ips": "10.0.0.1\x00"}, **alice_token)

    assert response.status_code == 200, response.text
    assert nul.status_code == 422
    assert nul.json()["message"].startswith("allow_ips: ")
