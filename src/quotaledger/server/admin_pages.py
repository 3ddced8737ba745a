"""The operator console's pages (SPEC §13) under `/admin`: server-rendered shells whose
small scripts (`/static/admin/*.js`) call the admin API for everything they show and do.
Data is never rendered into markup by a script: only as text (`textContent`), and the
templates escape everything. Anonymous visitors go to the login page; other users get 403.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from quotaledger.relay.providers import FORMATS
from quotaledger.server.pages import NO_STORE, AccountView, _redirect, _session_account, templates

router = APIRouter(include_in_schema=False)

# path -> (template, title): the console's pages, in the order of its navigation.
PAGES = {
    "/admin": ("dashboard", "Dashboard"),
    "/admin/channels": ("channels", "Channels"),
    "/admin/prices": ("prices", "Models & prices"),
    "/admin/users": ("users", "Users"),
    "/admin/keys": ("keys", "Keys"),
    "/admin/redemptions": ("redemptions", "Redemption codes"),
    "/admin/logs": ("logs", "Logs"),
    "/admin/audit": ("audit", "Audit"),
}


async def _page(request: Request, path: str) -> Response:
    account = await _session_account(request)
    if account is None:
        return _redirect("/login")
    name, title = PAGES[path]
    context = {"title": title, "account": AccountView.of(account), "pages": PAGES,
               "current": path, "formats": FORMATS}  # fmt: skip
    if not account.is_admin:
        return templates.TemplateResponse(
            request, "admin/refused.html", context, status_code=403, headers=NO_STORE
        )
    return templates.TemplateResponse(request, f"admin/{name}.html", context, headers=NO_STORE)


def _route(path: str) -> None:
    async def page(request: Request) -> Response:
        return await _page(request, path)

    router.add_api_route(path, page, methods=["GET"], name=f"admin-page:{path}")


for _path in PAGES:
    _route(_path)
