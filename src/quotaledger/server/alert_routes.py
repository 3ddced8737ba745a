"""The alert settings API (`alerts.py`), in new-api's envelope, for Account Settings and
scripts: `GET/PUT /api/user/alerts` (the account's thresholds in USD), `POST
/api/user/alerts/urls` and `DELETE /api/user/alerts/urls/{index}` (Apprise URLs, shown back
only as hints), `PUT /api/user/alerts/keys/{key_id}` (a limited key's thresholds) and
`POST /api/user/alerts/test` (a test notification to every URL)."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger.alerting import alerts
from quotaledger.alerting import states as alert_states
from quotaledger.alerting.alerts import AlertSettings, Thresholds
from quotaledger.errors import InvalidInput
from quotaledger.money import format_usd, usd_to_quota
from quotaledger.monitor.notify import check_url
from quotaledger.server.alert_messages import test_message
from quotaledger.server.alert_watch import RECOVERY_MARGIN, AlertWatch
from quotaledger.server.auth import Caller, any_caller
from quotaledger.server.errors import HTTPError, within_limit
from quotaledger.server.newapi_docs import API_READ, API_WRITE, described
from quotaledger.server.responses import ok
from quotaledger.server.services import Services

router = APIRouter()
log = logging.getLogger("quotaledger.alerting.alerts")
AnyCaller = Annotated[Caller, Depends(any_caller)]
TEST_FAILED = "the test notification was not delivered: check the URLs"
Usd = Annotated[Decimal | None, Field(None, ge=0, le=Decimal(10) ** 12)]


def _services(request: Request) -> Services:
    services: Services = request.app.state.ql
    return services


def _watch(request: Request) -> AlertWatch:
    return _services(request).alerts


class ThresholdsBody(BaseModel):
    """Thresholds in USD; null (or absent) clears one."""

    model_config = ConfigDict(extra="ignore")
    warn_usd: Usd = None
    critical_usd: Usd = None

    def thresholds(self) -> Thresholds:
        quota = [
            None if usd is None else usd_to_quota(usd) for usd in (self.warn_usd, self.critical_usd)
        ]
        return alerts.thresholds(*quota)


class UrlBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str = Field(min_length=1, max_length=alerts.MAX_URL_LENGTH)


def _levels(levels: Thresholds) -> dict[str, Any]:
    def usd(quota: int | None) -> str | None:
        return None if quota is None else format_usd(quota)

    return {
        "warn_quota": levels.warn, "critical_quota": levels.critical,
        "warn_usd": usd(levels.warn), "critical_usd": usd(levels.critical),
    }  # fmt: skip


def settings_item(found: AlertSettings) -> dict[str, Any]:
    """The settings as the API shows them: URLs as hints only."""
    keys = [
        {
            "id": key.key_id,
            "name": key.name,
            "remain_quota": key.remain_quota,
            "remain_quota_usd": format_usd(key.remain_quota),
            **_levels(key.thresholds),
        }
        for key in found.keys
    ]
    return {
        **_levels(found.thresholds),
        "recovery_margin": f"{RECOVERY_MARGIN * 100:.0f}%",
        "urls": [{"index": i, "hint": hint} for i, hint in enumerate(found.url_hints)],
        "keys": keys,
    }


async def _answer(request: Request, user_id: int) -> Response:
    found = await run_in_threadpool(alerts.get_settings, _services(request).database, user_id)
    return ok(settings_item(found))


@router.get("/api/user/alerts", **described("The caller's alert thresholds and URLs (hints)"))
async def get_alerts(request: Request, caller: AnyCaller) -> Response:
    return await _answer(request, caller.account.id)


@router.put("/api/user/alerts", **described("Set the account's alert thresholds (USD)", API_WRITE))
async def put_alerts(request: Request, body: ThresholdsBody, caller: AnyCaller) -> Response:
    user_id = caller.account.id
    database = _services(request).database
    await run_in_threadpool(alerts.set_thresholds, database, user_id, body.thresholds())
    _watch(request).changed(user_id)
    return await _answer(request, user_id)


@router.post(
    "/api/user/alerts/urls", **described("Add an Apprise URL to notify", (*API_WRITE, 503))
)
async def add_url(request: Request, body: UrlBody, caller: AnyCaller) -> Response:
    watch = _watch(request)
    problem = await run_in_threadpool(check_url, body.url) or watch.policy.refusal(body.url)
    if problem is not None:
        raise InvalidInput("url", problem)
    user_id = caller.account.id
    database = _services(request).database
    await run_in_threadpool(alerts.add_url, database, watch.cipher, user_id, body.url)
    return await _answer(request, user_id)


@router.delete(
    "/api/user/alerts/urls/{index}",
    **described("Remove an Apprise URL (by index)", (*API_WRITE, 503)),
)
async def remove_url(
    request: Request, index: Annotated[int, Path(ge=0, le=alerts.MAX_URLS)], caller: AnyCaller
) -> Response:
    watch, user_id = _watch(request), caller.account.id
    database = _services(request).database
    await run_in_threadpool(alerts.remove_url, database, watch.cipher, user_id, index)
    return await _answer(request, user_id)


@router.put(
    "/api/user/alerts/keys/{key_id}",
    **described("Set a limited API key's alert thresholds (USD)", API_WRITE),
)
async def put_key_alerts(
    request: Request, key_id: Annotated[int, Path(ge=1, le=2**62)], body: ThresholdsBody,
    caller: AnyCaller,
) -> Response:  # fmt: skip
    user_id = caller.account.id
    database = _services(request).database
    await run_in_threadpool(alerts.set_key_thresholds, database, user_id, key_id, body.thresholds())
    watch = _watch(request)
    watch.changed(user_id)
    watch.check(alert_states.key_subject(key_id))
    return await _answer(request, user_id)


@router.post(
    "/api/user/alerts/test",
    **described("Send a test notification to every URL", (*API_READ, 429, 502, 503)),
)
async def send_test(request: Request, caller: AnyCaller) -> Response:
    """Rate-limited per account; the answer is "sent" or one generic failure, given no
    sooner than `TEST_ANSWER_SECONDS` after the call, so that neither its words, its status
    nor its timing tell why a URL failed (a closed port, a refused address, a slow host)."""
    services, watch, account = _services(request), _watch(request), caller.account
    within_limit(await services.limiter.hit("alert_test", str(account.id)))
    urls = await run_in_threadpool(
        alerts.notification_urls, services.database, watch.cipher, account.id
    )
    if not urls:
        raise HTTPError(422, "add an Apprise URL first: there is nowhere to send it")
    started = time.monotonic()
    sent = await watch.send(urls, test_message(account.username))
    await asyncio.sleep(max(0.0, watch.test_answer_seconds - (time.monotonic() - started)))
    if not sent:
        raise HTTPError(502, TEST_FAILED)
    return ok({"sent_to": len(urls)})
