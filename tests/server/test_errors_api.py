"""Every error is the envelope, with the right status, and changes nothing."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from quotaledger.server.app import create_app
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from support import login


def test_an_unknown_path_is_404_in_the_envelope(client: TestClient) -> None:
    response = client.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"success": False, "message": "not found", "data": None}


def test_a_wrong_method_is_405_in_the_envelope(client: TestClient) -> None:
    response = client.delete("/api/user/self")

    assert response.status_code == 405
    assert response.json()["success"] is False


def test_an_oversized_body_is_413(client: TestClient) -> None:
    response = client.post(
        "/api/user/login",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["success"] is False


def test_a_non_json_body_is_415(client: TestClient) -> None:
    response = client.post("/api/user/login", data={"username": "a", "password": "b"})

    assert response.status_code == 415
    assert response.json()["message"] == "send the body as application/json"


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/api/user/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["message"].startswith("body: invalid JSON")


def test_a_missing_field_is_422_naming_it(client: TestClient) -> None:
    response = client.post("/api/user/login", json={"username": "alice"})

    assert response.status_code == 422
    assert response.json()["message"].startswith("password:")


def test_an_unexpected_error_is_500_without_a_stack_trace(
    settings: Settings, database: Database
) -> None:
    app = create_app(settings, database)

    @app.framework.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/boom")

    assert response.status_code == 500
    assert response.json() == {"success": False, "message": "internal server error", "data": None}
    assert "secret internals" not in response.text


_NOT_UTF8 = b'{"username": "al\xffice", "password": "x\xfe"}'
_TOO_DEEP = b'{"password": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"


@pytest.mark.parametrize("body", [_NOT_UTF8, _TOO_DEEP], ids=["not-utf8", "too-deep"])
@pytest.mark.parametrize("path", ["/api/user/login", "/api/user/token", "/api/user/alice/topup"])
def test_a_body_that_is_not_utf8_or_too_deep_is_422_in_the_envelope_as_documented(
    client: TestClient, admin_token: str, make_user, path: str, body: bytes
) -> None:
    make_user("alice")
    csrf = login(client, "alice", "alice-password-123")
    headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf}
    if path.endswith("/topup"):
        client.cookies.clear()
        headers["Authorization"] = admin_token

    response = client.post(path, content=body, headers=headers)
    described = path.replace("/alice/", "/{username}/")
    documented = client.get("/openapi.json").json()["paths"][described]["post"]["responses"]

    assert response.status_code == 422
    assert response.json()["success"] is False
    assert response.json()["message"].startswith("body: invalid JSON")
    assert "422" in documented


def test_a_top_up_with_both_amounts_says_so_in_the_apis_words(
    client: TestClient, admin_token: str, make_user
) -> None:
    make_user("alice")

    response = client.post(
        "/api/user/alice/topup",
        json={"usd": "1", "quota": 5},
        headers={"Authorization": admin_token},
    )

    assert response.status_code == 422
    assert response.json()["message"] == "body: send either usd or quota, not both"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/user/alice/topup", {"usd": "1", "extra": 1}),
        ("/api/user/alice/topup", {}),
        ("/api/user/alice/topup", []),
        ("/api/user/login", []),
        ("/api/usage", "a string"),
    ],
)
def test_a_422_never_names_an_internal_class(
    client: TestClient, admin_token: str, make_user, path: str, body: object
) -> None:
    make_user("alice")

    response = client.post(path, json=body, headers={"Authorization": admin_token})

    assert response.status_code == 422
    message = response.json()["message"]
    assert not re.search(r"TopUp|Body|Usage|instance of", message), message


def test_an_empty_body_is_422_not_a_request_left_waiting(
    settings: Settings, database: Database
) -> None:
    """The front door reads a body before the framework; an empty one is handed on too, so a
    route that reads it gets it at once (a server would otherwise wait for the client)."""
    import asyncio

    app = create_app(settings, database)
    sent: list[dict] = []  # type: ignore[type-arg]
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict:  # type: ignore[type-arg]
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # as a server does until the client goes away
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/user/login",
        "raw_path": b"/api/user/login",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"0")],
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=5))

    assert sent[0]["status"] == 422
