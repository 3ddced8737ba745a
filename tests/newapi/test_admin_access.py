"""Nobody but an admin reaches the admin API or the console (SPEC §13): every route of
`admin_api.ADMIN_ROUTERS` and every page of `admin_pages.PAGES` is tried anonymously, with
a user's token and with a user's session; a session's writes need the CSRF header even
for an admin. The routes come from the routers themselves, so a new one is tried too."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from quotaledger.server.admin_api import ADMIN_ROUTERS
from quotaledger.server.admin_pages import PAGES
from support import ADMIN_PASSWORD, issue_token, login

FOR_EVERY_USER = {("PUT", "/api/user/self")}  # one's own password change
ADMIN_ROUTES = sorted(
    (method, route.path)
    for router in ADMIN_ROUTERS
    for route in router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
    if (method, route.path) not in FOR_EVERY_USER
)
WRITES = [(method, path) for method, path in ADMIN_ROUTES if method != "GET"]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _call(client: TestClient, method: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
    body = {"json": {}} if method in ("POST", "PUT") else {}
    return client.request(method, _concrete(path), **body, **kwargs)  # type: ignore[arg-type]


def test_the_route_table_is_not_empty_and_holds_new_apis_admin_routes() -> None:
    for expected in [("GET", "/api/channel/"), ("POST", "/api/user/manage"),
                     ("GET", "/api/channel/test/{channel_id}"), ("GET", "/api/log/stat"),
                     ("PUT", "/api/redemption/"), ("GET", "/api/audit/")]:  # fmt: skip
        assert expected in ADMIN_ROUTES


def test_every_admin_looking_route_of_the_app_is_in_the_table(client: TestClient) -> None:
    """A route under an admin prefix added outside ADMIN_ROUTERS would not be tried here."""
    framework = client.app.framework  # type: ignore[attr-defined]
    prefixes = ("/api/channel", "/api/redemption", "/api/audit", "/api/admin", "/admin")
    found = {
        (method, route.path)
        for route in framework.routes
        if isinstance(route, APIRoute) and route.path.startswith(prefixes)
        for method in route.methods
    }
    pages = {("GET", path) for path in PAGES}
    assert found - set(ADMIN_ROUTES) - pages == set()


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_an_anonymous_caller_is_refused(client: TestClient, method: str, path: str) -> None:
    answer = _call(client, method, path)
    assert answer.status_code == 401, answer.text
    assert answer.json()["success"] is False


# Each credential below is made once per test (a password hash and check cost ~55 ms each)
# and tried on every route, one subtest per route: refusals change nothing, so the routes
# cannot see each other's calls.


def test_a_users_token_is_refused(client: TestClient, make_user, subtests) -> None:  # type: ignore[no-untyped-def]
    user = make_user("mallory")
    token = issue_token(client, "mallory", user.password)
    client.cookies.clear()

    for method, path in ADMIN_ROUTES:
        with subtests.test(method=method, path=path):
            answer = _call(client, method, path, headers={"Authorization": token})
            assert answer.status_code == 403, answer.text


def test_a_users_session_is_refused(client: TestClient, make_user, subtests) -> None:  # type: ignore[no-untyped-def]
    user = make_user("mallory")
    csrf = login(client, "mallory", user.password)

    for method, path in ADMIN_ROUTES:
        with subtests.test(method=method, path=path):
            answer = _call(client, method, path, headers={"X-CSRF-Token": csrf})
            assert answer.status_code == 403, answer.text


def test_an_admins_session_write_without_the_csrf_header_is_refused(  # type: ignore[no-untyped-def]
    client: TestClient, subtests
) -> None:
    login(client, "admin", ADMIN_PASSWORD)

    assert WRITES
    for method, path in WRITES:
        with subtests.test(method=method, path=path):
            answer = _call(client, method, path)
            assert answer.status_code == 403, answer.text
            assert "CSRF" in answer.json()["message"]


@pytest.mark.parametrize("path", list(PAGES))
def test_console_pages_send_anonymous_visitors_to_log_in(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_console_pages_refuse_other_users(client: TestClient, make_user, subtests) -> None:  # type: ignore[no-untyped-def]
    user = make_user("mallory")
    login(client, "mallory", user.password)

    for path in PAGES:
        with subtests.test(path=path):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 403
            assert "admin accounts only" in answer.text
            assert "/static/admin/" not in answer.text  # none of the console's scripts


def test_console_pages_open_for_an_admin(client: TestClient, subtests) -> None:  # type: ignore[no-untyped-def]
    login(client, "admin", ADMIN_PASSWORD)

    for path in PAGES:
        with subtests.test(path=path):
            answer = client.get(path)
            assert answer.status_code == 200
            assert "script-src 'self'" in answer.headers["content-security-policy"]
