"""The pages as HTTP sees them, without a browser: redirects, headers, what is rendered,
and that everything a page loads comes from this server (the CSP allows nothing else)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from quotaledger.identity import accounts
from support import issue_token, login

NO_REDIRECTS = {"follow_redirects": False}


def test_account_without_a_session_redirects_to_login(client: TestClient) -> None:
    response = client.get("/account", **NO_REDIRECTS)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert response.headers["cache-control"] == "no-store"


def test_account_with_an_ended_session_says_so_on_the_login_page(client: TestClient) -> None:
    client.cookies.set("ql_session", "no-such-session")
    response = client.get("/account", **NO_REDIRECTS)
    assert response.headers["location"] == "/login?notice=expired"
    client.cookies.clear()
    assert "Your session has ended. Log in again." in client.get("/login?notice=expired").text


def test_the_login_page_shows_only_known_notices(client: TestClient) -> None:
    page = client.get("/login?notice=<script>alert(1)</script>").text
    assert "alert(1)" not in page
    assert 'class="notice"' not in page


def test_the_site_root_leads_to_account_settings(client: TestClient) -> None:
    response = client.get("/", **NO_REDIRECTS)
    assert (response.status_code, response.headers["location"]) == (303, "/account")


def test_account_settings_show_the_balance_and_this_servers_curl_example(
    client: TestClient, make_user
) -> None:
    user = make_user("bob", quota=24_997_909)
    login(client, "bob", user.password)
    response = client.get("/account")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert '<span id="balance-usd" class="amount">$49.99</span>' in page
    assert '<span id="balance-quota">24,997,909</span>' in page
    assert "curl --compressed -s http://testserver/api/user/self" in page
    assert "Authorization: $QUOTALEDGER_TOKEN" in page


def test_account_settings_never_render_the_token(client: TestClient, make_user) -> None:
    user = make_user("bob")
    token = issue_token(client, "bob", user.password)
    page = client.get("/account").text
    assert token not in page
    assert token[3:-4] not in page
    assert f"ql_…{token[-4:]}" in page


def test_pages_load_only_their_own_scripts_and_styles(client: TestClient, make_user) -> None:
    pages = [client.get("/login?notice=logged-out").text]
    user = make_user("bob")
    login(client, "bob", user.password)
    pages.append(client.get("/account").text)
    for page in pages:
        assert re.findall(r"<script(?![^>]*\bsrc=\"/static/)", page) == []
        assert "<style" not in page and " style=" not in page
        for url in re.findall(r'(?:src|href)="([^"]+)"', page):
            assert url.startswith("/"), url


def test_static_files_are_served_with_their_types(client: TestClient) -> None:
    types = {
        "/static/account.js": "javascript",
        "/static/api.js": "javascript",
        "/static/login.js": "javascript",
        "/static/keys.js": "javascript",
        "/static/usage.js": "javascript",
        "/static/usage_chart.js": "javascript",
        "/static/redeem.js": "javascript",
        "/static/quotaledger.css": "text/css",
        "/static/favicon.svg": "image/svg+xml",
    }
    for path, kind in types.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path


def test_pages_are_not_part_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/login", "/account"} & set(paths)
    assert not any(path.startswith("/static") for path in paths)


def test_disabling_an_account_sends_its_open_page_back_to_login(
    client: TestClient, make_user, database
) -> None:
    user = make_user("bob")
    login(client, "bob", user.password)
    accounts.set_status(database, "bob", "disabled")
    response = client.get("/account", **NO_REDIRECTS)
    assert response.headers["location"] == "/login?notice=expired"
