"""GET /api/user/self: the balance, as the reference page describes it."""

from __future__ import annotations

import gzip

from starlette.testclient import TestClient

from quotaledger.billing import pricing
from quotaledger.store.database import Database
from support import issue_token, login


def test_the_balance_matches_the_reference_page_example(client: TestClient, make_user) -> None:
    user = make_user("alice", quota=24_997_909)
    token = issue_token(client, "alice", user.password)

    response = client.get("/api/user/self", headers={"Authorization": token})

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] is None
    data = body["data"]
    assert data["quota"] == 24_997_909
    assert data["quota_usd"] == "49.99"
    assert data["used_quota"] == 0
    assert data["request_count"] == 0
    assert data["group"] == "default"
    assert data["username"] == "alice"
    assert data["id"] == user.account.id


def test_a_bearer_token_works_like_a_raw_one(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)
    client.cookies.clear()

    response = client.get("/api/user/self", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json()["data"]["username"] == "alice"


def test_the_browser_session_also_reads_the_balance(client: TestClient, make_user) -> None:
    user = make_user("alice", quota=1_000_000)
    login(client, "alice", user.password)

    response = client.get("/api/user/self")

    assert response.json()["data"]["quota_usd"] == "2.00"


def test_a_token_and_a_browser_session_get_the_same_answer(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)  # also leaves a session cookie

    by_session = client.get("/api/user/self", headers={"Accept-Encoding": "gzip"})
    by_token = client.get(
        "/api/user/self", headers={"Authorization": token, "Accept-Encoding": "gzip"}
    )

    # One endpoint (balance.py) for both; a token and a session must get the same answer.
    assert by_token.status_code == by_session.status_code == 200
    assert by_token.content == by_session.content
    same = {name: value for name, value in by_session.headers.items() if name != "ratelimit-reset"}
    assert {name: by_token.headers.get(name) for name in same} == same
    assert set(by_token.headers) == set(by_session.headers)


def test_a_balance_polled_again_shows_the_charge_made_in_between(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    user = make_user("alice", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    token = issue_token(client, "alice", user.password)
    headers = {"Authorization": token, "Accept-Encoding": "gzip"}
    before = [client.get("/api/user/self", headers=headers).json()["data"] for _ in range(2)]

    charge = {"username": "alice", "model": "m", "request_id": "r1"}
    client.post("/api/usage", json=charge, headers={"Authorization": admin_token})
    after = client.get("/api/user/self", headers=headers).json()["data"]

    assert before[0] == before[1]
    assert (before[1]["quota"], after["quota"]) == (1_000_000, 990_000)
    assert (after["used_quota"], after["request_count"]) == (10_000, 1)


def test_model_fixed_price_lists_per_call_models_only(
    client: TestClient, make_user, database: Database
) -> None:
    pricing.set_price(database, pricing.make_price("dall-e-3", per_call_usd="0.04"))
    pricing.set_price(
        database,
        pricing.make_price("gpt-4o", input_usd_per_mtok="2.5", output_usd_per_mtok="10"),
    )
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    data = client.get("/api/user/self", headers={"Authorization": token}).json()["data"]

    assert data["ModelFixedPrice"] == {"dall-e-3": "0.04"}


def test_the_response_is_gzip_compressed_when_accepted(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    response = client.get(
        "/api/user/self", headers={"Authorization": token, "Accept-Encoding": "gzip"}
    )

    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert response.json()["data"]["username"] == "alice"  # httpx decompressed it


def test_a_client_that_does_not_accept_gzip_gets_plain_json(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    response = client.get(
        "/api/user/self", headers={"Authorization": token, "Accept-Encoding": "identity"}
    )

    assert "content-encoding" not in response.headers
    assert response.content.startswith(b'{"success":true')


def test_always_gzip_compresses_even_without_accept_encoding(settings, database, make_user) -> None:
    from quotaledger.server.app import create_app

    app = create_app(settings.with_overrides(always_gzip=True), database)
    user = make_user("alice")
    with TestClient(app) as client:
        token = issue_token(client, "alice", user.password)
        request = client.build_request(
            "GET", "/api/user/self", headers={"Authorization": token, "Accept-Encoding": ""}
        )
        response = client.send(request, stream=True)
        raw = b"".join(response.iter_raw())

    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw).startswith(b'{"success":true')


def test_usd_is_truncated_never_rounded_up(client: TestClient, make_user) -> None:
    user = make_user("alice", quota=4_999)  # $0.009998
    token = issue_token(client, "alice", user.password)

    data = client.get("/api/user/self", headers={"Authorization": token}).json()["data"]

    assert data["quota_usd"] == "0.00"


def test_balance_beyond_32_bit_quota_is_exact(client: TestClient, make_user) -> None:
    user = make_user("alice", quota=10**13)  # $20,000,000: far past new-api's int32 column
    token = issue_token(client, "alice", user.password)

    data = client.get("/api/user/self", headers={"Authorization": token}).json()["data"]

    assert data["quota"] == 10**13
    assert data["quota_usd"] == "20000000.00"


def test_status_publishes_quota_per_unit(client: TestClient) -> None:
    body = client.get("/api/status").json()

    assert body["success"] is True
    assert body["data"]["quota_per_unit"] == 500_000


def test_healthz_checks_the_database(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["data"] == {"status": "ok", "database": "ok"}


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    assert "/api/user/self" in schema["paths"]
    assert "429" in schema["paths"]["/api/user/self"]["get"]["responses"]
    assert client.get("/docs").status_code == 200


def test_metrics_are_exposed_for_prometheus(client: TestClient) -> None:
    client.get("/api/status")
    client.get("/api/status")
    client.get("/api/user/self", headers={"Authorization": "ql_not-a-token"})  # the lane

    response = client.get("/metrics")

    assert response.status_code == 200
    assert 'quotaledger_http_responses_total{method="GET",status="200"} 2.0' in response.text
    assert 'quotaledger_http_responses_total{method="GET",status="401"} 1.0' in response.text


def test_security_headers_are_on_every_response(client: TestClient) -> None:
    for path in ("/api/status", "/api/nope", "/healthz", "/login"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_api_answers_are_never_cached_nor_framed(client: TestClient) -> None:
    headers = client.get("/api/status").headers

    assert headers["cache-control"] == "no-store"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_pages_get_the_full_browser_policy(client: TestClient) -> None:
    headers = client.get("/login").headers

    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in headers["content-security-policy"]


def test_pricing_lists_models_and_group_ratios(client: TestClient, database: Database) -> None:
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    pricing.set_group_ratio(database, "vip", "0.8")

    data = client.get("/api/pricing").json()["data"]

    assert data["models"] == [
        {
            "model": "m",
            "per_call_usd": "0.02",
            "input_usd_per_mtok": None,
            "output_usd_per_mtok": None,
        }
    ]
    assert data["group_ratios"] == {"vip": "0.8"}
