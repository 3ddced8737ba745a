"""Every error is the envelope, with the right status, and changes nothing."""

from __future__ import annotations

from starlette.testclient import TestClient

from quotaledger.server.app import create_app
from quotaledger.settings import Settings
from quotaledger.store.database import Database


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
