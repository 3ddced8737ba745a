"""Who may call what: tokens, sessions, CSRF, New-Api-User, disabled accounts."""

from __future__ import annotations

from starlette.testclient import TestClient

from quotaledger import tokens
from quotaledger.identity import accounts
from quotaledger.store.database import Database
from support import issue_token, login


def _self(client: TestClient, token: str | None, **headers: str):  # type: ignore[no-untyped-def]
    client.cookies.clear()
    if token is not None:
        headers["Authorization"] = token
    return client.get("/api/user/self", headers=headers)


def test_an_unknown_token_is_401_with_www_authenticate_and_the_api_headers(
    client: TestClient,
) -> None:
    response = _self(client, tokens.generate_token())

    assert response.status_code == 401
    assert response.json()["message"] == "unknown or replaced token"
    assert response.headers["www-authenticate"] == 'Bearer realm="quotaledger"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_a_missing_token_is_401_with_www_authenticate(client: TestClient) -> None:
    response = _self(client, None)

    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "message": "missing credentials: send Authorization: <system token>",
        "data": None,
    }
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_malformed_token_is_401(client: TestClient) -> None:
    response = _self(client, "sk-not-ours")

    assert response.status_code == 401
    assert "malformed" in response.json()["message"]


def test_a_token_with_a_bad_checksum_is_refused_as_malformed(client: TestClient) -> None:
    token = tokens.generate_token()
    typo = token[:-1] + ("A" if token[-1] != "A" else "B")

    assert not tokens.is_well_formed(typo)
    assert "malformed" in _self(client, typo).json()["message"]


def test_a_well_formed_but_unknown_token_is_401(client: TestClient) -> None:
    response = _self(client, tokens.generate_token())

    assert response.status_code == 401
    assert response.json()["message"] == "unknown or replaced token"


def test_regenerating_the_token_revokes_the_old_one(client: TestClient, make_user) -> None:
    user = make_user("alice")
    old = issue_token(client, "alice", user.password)
    new = issue_token(client, "alice", user.password)

    assert old != new
    assert _self(client, old).status_code == 401
    assert _self(client, new).status_code == 200


def test_a_wrong_password_issues_nothing_and_keeps_the_old_token(
    client: TestClient, make_user
) -> None:
    user = make_user("alice")
    old = issue_token(client, "alice", user.password)
    csrf = client.cookies["ql_csrf"]

    response = client.post(
        "/api/user/token", json={"password": "wrong-password"}, headers={"X-CSRF-Token": csrf}
    )

    assert response.status_code == 401
    assert response.json()["data"] is None
    assert _self(client, old).status_code == 200


def test_the_token_response_is_not_cached(client: TestClient, make_user) -> None:
    user = make_user("alice")
    csrf = login(client, "alice", user.password)

    response = client.post(
        "/api/user/token", json={"password": user.password}, headers={"X-CSRF-Token": csrf}
    )

    assert response.headers["cache-control"] == "no-store"


def test_the_token_is_never_echoed_by_another_route(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    for path in ("/api/user/self", "/api/log/self", "/api/pricing", "/api/status"):
        assert token not in client.get(path, headers={"Authorization": token}).text
    assert (
        token[-4:]
        in client.get("/api/user/self", headers={"Authorization": token}).json()["data"][
            "token_hint"
        ]
    )


def test_issuing_a_token_needs_a_session_not_a_token(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)
    client.cookies.clear()

    response = client.post(
        "/api/user/token", json={"password": user.password}, headers={"Authorization": token}
    )

    assert response.status_code == 401


def test_a_session_request_without_the_csrf_header_is_403(client: TestClient, make_user) -> None:
    user = make_user("alice")
    login(client, "alice", user.password)

    response = client.post("/api/user/token", json={"password": user.password})

    assert response.status_code == 403
    assert "CSRF" in response.json()["message"]


def test_a_session_request_with_a_wrong_csrf_header_is_403(client: TestClient, make_user) -> None:
    user = make_user("alice")
    login(client, "alice", user.password)

    response = client.post(
        "/api/user/token", json={"password": user.password}, headers={"X-CSRF-Token": "forged"}
    )

    assert response.status_code == 403


def test_login_sets_strict_http_only_session_cookie(client: TestClient, make_user) -> None:
    user = make_user("alice")

    response = client.post("/api/user/login", json={"username": "alice", "password": user.password})

    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("ql_session="))
    csrf = next(c for c in cookies if c.startswith("ql_csrf="))
    assert "HttpOnly" in session and "SameSite=strict" in session
    assert "HttpOnly" not in csrf and "SameSite=strict" in csrf
    assert "password" not in response.text.lower()


def test_login_with_a_wrong_password_is_401(client: TestClient, make_user) -> None:
    make_user("alice")

    response = client.post("/api/user/login", json={"username": "alice", "password": "nope-nope"})

    assert response.status_code == 401
    assert response.json()["message"] == "wrong username or password"


def test_login_of_an_unknown_user_gives_the_same_answer(client: TestClient) -> None:
    response = client.post("/api/user/login", json={"username": "ghost", "password": "nope-nope"})

    assert response.status_code == 401
    assert response.json()["message"] == "wrong username or password"


def test_logout_ends_the_session(client: TestClient, make_user) -> None:
    user = make_user("alice")
    csrf = login(client, "alice", user.password)
    session = client.cookies["ql_session"]

    assert client.post("/api/user/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    client.cookies.set("ql_session", session)  # a copy kept by an attacker is dead too

    assert client.get("/api/user/self").status_code == 401


def test_a_disabled_account_is_403_with_a_valid_token(
    client: TestClient, make_user, database: Database
) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    accounts.set_status(database, "alice", "disabled")

    response = _self(client, token)
    assert response.status_code == 403
    assert response.json()["message"] == "this account is disabled"


def test_a_disabled_account_cannot_log_in(
    client: TestClient, make_user, database: Database
) -> None:
    user = make_user("alice")
    accounts.set_status(database, "alice", "disabled")

    response = client.post("/api/user/login", json={"username": "alice", "password": user.password})

    assert response.status_code == 403


def test_a_matching_new_api_user_header_is_accepted(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    response = _self(client, token, **{"New-Api-User": str(user.account.id)})

    assert response.status_code == 200


def test_a_mismatched_new_api_user_header_is_403(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    response = _self(client, token, **{"New-Api-User": str(user.account.id + 1)})

    assert response.status_code == 403
    assert "New-Api-User" in response.json()["message"]


def test_a_user_token_on_an_admin_route_is_403(client: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(client, "alice", user.password)

    response = client.post(
        "/api/user/alice/topup", json={"quota": 1}, headers={"Authorization": token}
    )

    assert response.status_code == 403


def test_cookies_are_secure_behind_a_trusted_tls_proxy(settings, database, make_user) -> None:  # type: ignore[no-untyped-def]
    import ipaddress

    from quotaledger.server.app import create_app

    proxied = settings.with_overrides(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    user = make_user("alice")
    with TestClient(create_app(proxied, database), client=("127.0.0.1", 5000)) as client:
        response = client.post(
            "/api/user/login",
            json={"username": "alice", "password": user.password},
            headers={"X-Forwarded-Proto": "https"},
        )

    assert all("Secure" in c for c in response.headers.get_list("set-cookie"))


def test_cookies_are_not_secure_on_plain_http(client: TestClient, make_user) -> None:
    user = make_user("alice")

    response = client.post(
        "/api/user/login",
        json={"username": "alice", "password": user.password},
        headers={"X-Forwarded-Proto": "https"},  # from an untrusted peer: ignored
    )

    assert not any("Secure" in c for c in response.headers.get_list("set-cookie"))
