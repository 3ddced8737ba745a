"""The web pages of SPEC §5: `/login` and `/account` (Account Settings).

Pages are rendered on the server from the session cookie; their scripts (served from
`/static`, never inline: the CSP forbids it) call the JSON API for everything that changes
state: logging in and out, and issuing the system token after the password is checked again.
A token is never rendered by the server, so after a reload it is nowhere in the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from quotaledger.errors import PermissionDenied
from quotaledger.identity import sessions
from quotaledger.identity.accounts import Account
from quotaledger.money import format_usd
from quotaledger.server import log_export
from quotaledger.server.auth import SESSION_COOKIE
from quotaledger.server.services import Services

_HERE = Path(__file__).parent
NO_STORE = {"Cache-Control": "no-store"}
NOTICES = {
    "logged-out": "You have logged out.",
    "expired": "Your session has ended. Log in again.",
}

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the pages and their static files (`/static`) to `app`."""
    app.include_router(router)
    app.include_router(log_export.router)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")


@dataclass(frozen=True)
class AccountView:
    """What the Account Settings page shows, formatted for people."""

    username: str
    group: str
    balance_usd: str
    quota: str
    used_usd: str
    used_quota: str
    request_count: str
    token_hint: str | None
    token_created: str | None

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            username=account.username,
            group=account.group,
            balance_usd=_dollars(account.quota),
            quota=f"{account.quota:,}",
            used_usd=_dollars(account.used_quota),
            used_quota=f"{account.used_quota:,}",
            request_count=f"{account.request_count:,}",
            token_hint=account.token_hint,
            token_created=_utc(account.token_created_at),
        )


def _dollars(quota: int) -> str:
    usd = format_usd(quota)
    return f"-${usd[1:]}" if usd.startswith("-") else f"${usd}"


def _utc(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _session_account(request: Request) -> Account | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    services: Services = request.app.state.ql
    try:
        found = await run_in_threadpool(sessions.account_for_session, services.database, session_id)
    except PermissionDenied:  # a disabled account: logging in again says so
        return None
    return None if found is None else found[0]


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers=NO_STORE)


@router.get("/")
async def home() -> Response:
    return _redirect("/account")


@router.get("/login")
async def login_page(request: Request) -> Response:
    if await _session_account(request) is not None:
        return _redirect("/account")
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return templates.TemplateResponse(
        request, "login.html", {"title": "Log in", "notice": notice}, headers=NO_STORE
    )


@router.get("/account")
async def account_page(request: Request) -> Response:
    account = await _session_account(request)
    if account is None:
        expired = SESSION_COOKIE in request.cookies
        return _redirect("/login?notice=expired" if expired else "/login")
    context = {
        "title": "Account Settings",
        "account": AccountView.of(account),
        "base_url": str(request.base_url).rstrip("/"),
        "is_admin": account.is_admin,
    }
    return templates.TemplateResponse(request, "account.html", context, headers=NO_STORE)
