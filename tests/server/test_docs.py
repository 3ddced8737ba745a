"""`/docs` works offline: Swagger UI's files come from this server, and the page's
Content-Security-Policy allows nothing from another site (SPEC §10)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient


def test_the_docs_page_loads_everything_from_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)

    assert page.status_code == 200
    assert referenced and all(
        url.startswith("/") and not url.startswith("//") for url in referenced
    )
    for url in referenced:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text


def test_the_docs_page_allows_no_other_site_and_no_inline_script(client: TestClient) -> None:
    csp = client.get("/docs").headers["content-security-policy"]

    assert "http" not in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp
    assert "<script>" not in client.get("/docs").text  # every script is a file
