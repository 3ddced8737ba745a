"""Body limits on every route that takes a body (login, logout, token, usage, top-up):
413 for a body over `QUOTALEDGER_MAX_BODY_BYTES`, whether it declares its length or comes
chunked, and 415 for a body that is not JSON. Each request carries valid credentials, so
the limit holds whatever the order of checks, and nothing is changed by a refused body."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from quotaledger.store.database import Database
from support import (
    ADMIN_PASSWORD,
    LiveServer,
    check_invariant,
    issue_token,
    login,
    start_server,
    stop_server,
    token_from,
)

LIMIT = 64 * 1024  # the default QUOTALEDGER_MAX_BODY_BYTES


@dataclass(frozen=True)
class Route:
    path: str
    credentials: str  # "session" (with CSRF), "admin token" or "none"


ROUTES = [
    Route("/api/user/login", "none"),
    Route("/api/user/logout", "session"),
    Route("/api/user/token", "session"),
    Route("/api/usage", "admin token"),
    Route("/api/user/alice/topup", "admin token"),
]
ROUTE_IDS = [route.path for route in ROUTES]


@pytest.fixture
def alice(make_user):  # type: ignore[no-untyped-def]
    return make_user("alice", quota=1_000_000)


def _headers(client: TestClient, route: Route, password: str) -> dict[str, str]:
    if route.credentials == "session":
        return {"X-CSRF-Token": login(client, "alice", password)}
    if route.credentials == "admin token":
        with TestClient(client.app, base_url="http://testserver") as other:
            return {"Authorization": issue_token(other, "admin", ADMIN_PASSWORD)}
    return {}


def _unchanged(client: TestClient, database: Database, route: Route) -> None:
    """A refused body changed nothing: alice's balance, her session, the ledger."""
    check_invariant(database)
    if route.credentials == "session":
        assert client.get("/api/user/self").status_code == 200  # still logged in
    with database.read() as connection:
        quota = connection.exec_driver_sql(
            "SELECT quota, request_count FROM users WHERE username = 'alice'"
        ).one()
    assert tuple(quota) == (1_000_000, 0)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_body_declared_over_the_limit_is_413(
    client: TestClient, database: Database, alice, route: Route
) -> None:
    headers = {**_headers(client, route, alice.password), "Content-Type": "application/json"}
    body = b'{"password": "' + b"x" * (LIMIT + 10) + b'"}'

    response = client.post(route.path, content=body, headers=headers)

    assert response.status_code == 413, response.text
    assert response.json() == {
        "success": False,
        "message": f"request body over {LIMIT} bytes",
        "data": None,
    }
    _unchanged(client, database, route)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_chunked_body_over_the_limit_is_413(
    client: TestClient, database: Database, alice, route: Route
) -> None:
    headers = {**_headers(client, route, alice.password), "Content-Type": "application/json"}

    def chunks() -> Iterator[bytes]:
        yield b'{"password": "'
        for _ in range(10):
            yield b"x" * 8_000
        yield b'"}'

    response = client.post(route.path, content=chunks(), headers=headers)

    assert response.status_code == 413, response.text
    assert response.json()["success"] is False
    _unchanged(client, database, route)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", None], ids=str
)
def test_a_body_that_is_not_json_is_415(
    client: TestClient, database: Database, alice, route: Route, content_type: str | None
) -> None:
    headers = _headers(client, route, alice.password)
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = client.post(route.path, content=b"password=x&quota=5", headers=headers)

    assert response.status_code == 415, response.text
    assert response.json() == {
        "success": False,
        "message": "send the body as application/json",
        "data": None,
    }
    _unchanged(client, database, route)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_body_just_under_the_limit_is_read(client: TestClient, alice, route: Route) -> None:
    """The limit refuses only what is over it: a body of exactly the limit gets the route's
    own answer (a 422 for the junk field here), not 413."""
    headers = {**_headers(client, route, alice.password), "Content-Type": "application/json"}
    prefix, suffix = b'{"junk": "', b'"}'
    body = prefix + b"x" * (LIMIT - len(prefix) - len(suffix)) + suffix
    assert len(body) == LIMIT

    response = client.post(route.path, content=body, headers=headers)

    assert response.status_code not in (413, 415), response.text


# ------------------------------------------------------------------ over the wire


def _status(sock: socket.socket) -> int:
    return int(sock.recv(65536).split(b" ", 2)[1])


def _connect(server: LiveServer) -> socket.socket:
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _send_head(sock: socket.socket, path: str, head: list[str]) -> None:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *head]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def _chunked_post(server: LiveServer, path: str, head: list[str], body: bytes) -> int:
    """POST with a hand-made chunked body over a real socket; returns the status."""
    with _connect(server) as sock:
        _send_head(sock, path, [*head, "Transfer-Encoding: chunked"])
        try:
            for start in range(0, len(body), 4096):
                chunk = body[start : start + 4096]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before the whole body is sent
        return _status(sock)


def _announced_post(server: LiveServer, path: str, head: list[str]) -> int:
    """Announce a 100 MB body and send none of it: the answer must not wait for it."""
    with _connect(server) as sock:
        _send_head(sock, path, [*head, "Content-Length: 100000000"])
        return _status(sock)


def test_a_real_server_refuses_oversized_bodies_on_every_route_without_reading_them(
    tmp_path: Path,
) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'live.db'}", tmp_path)
    try:
        created = server.cli(
            "user", "create", "alice", "--password-stdin", "--quota", "1000000",
            input="alice-password-123\n",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        admin = token_from(server.base_url, "admin", ADMIN_PASSWORD)
        body = b'{"password": "' + b"x" * (LIMIT * 2) + b'"}'
        chunked, announced = {}, {}
        for route in ROUTES:
            head = [f"Authorization: {admin}"] if route.credentials == "admin token" else []
            chunked[route.path] = _chunked_post(server, route.path, head, body)
            announced[route.path] = _announced_post(server, route.path, head)
    finally:
        stop_server(server)

    assert chunked == {route.path: 413 for route in ROUTES}
    assert announced == {route.path: 413 for route in ROUTES}
