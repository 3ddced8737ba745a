"""`/docs` in a real browser with every other site unreachable: Swagger UI renders the API
from this server's own files, under the page's CSP."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route

from support import LiveServer

pytestmark = pytest.mark.browser


def test_swagger_ui_renders_every_route_offline(browser: Browser, web_server: LiveServer) -> None:
    own = urlsplit(web_server.base_url).netloc
    elsewhere: list[str] = []
    problems: list[str] = []

    def offline(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context()
    page = context.new_page()
    page.route("**/*", offline)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{web_server.base_url}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)

    text = page.inner_text("#swagger-ui")
    assert "/api/user/self" in text and "/api/usage" in text
    assert elsewhere == []
    assert problems == []
    context.close()
