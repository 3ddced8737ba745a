"""`/docs`: Swagger UI over `/openapi.json`, served entirely from this server (it works
offline, and no page loads anything from another site: SPEC §10).

Swagger UI's own files come from the `fastapi-offline` package, which ships them for exactly
this (MIT; Swagger UI itself is Apache-2.0). The page starts Swagger UI from a script file
of ours rather than an inline script, so its Content-Security-Policy allows scripts from
this server only (`finisher.DOCS_CSP`).
"""

from __future__ import annotations

import importlib.resources

from fastapi import FastAPI
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>quotaledger API</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script src="/static/docs.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Add `/docs` and Swagger UI's files to `app` (built with `docs_url=None`)."""
    swagger_ui = importlib.resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui)), name="docs-assets")
    app.add_api_route("/docs", _docs_page, methods=["GET"], include_in_schema=False)


async def _docs_page() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-store"})
