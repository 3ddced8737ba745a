"""What an API key may still spend, asked with the key itself (SPEC §9), answered by the
front door: new-api's `GET /api/usage/token`, and OpenAI's legacy billing endpoints
`/v1/dashboard/billing/subscription` and `/usage` (also without `/v1`), which chat clients
such as NextChat read for their balance display.

A key spends its owner's balance, its own budget (unless unlimited) and its period's limit
(if any), so what it may spend now is the least of the three (`available`). new-api's
`total_granted` is what the key has used plus its own remaining budget; for an unlimited
key, used plus what it may spend now. new-api answers this route with
`{"code": true, "message": "ok", "data": ...}`; here the envelope carries `code: true`
besides `success`, so that readers of either find theirs.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson

from quotaledger.identity import keys
from quotaledger.identity.keys import Admission
from quotaledger.money import QUOTA_PER_USD, format_usd
from quotaledger.server.calls import Answer, Call
from quotaledger.server.errors import within_limit

_JSON = [(b"content-type", b"application/json")]


async def _admission(call: Call) -> Admission:
    """The calling key (`Authorization: Bearer sk-ql-...`); its lookups count against the
    balance query's rate limit, per key."""
    raw = call.head.token or ""
    digest = keys.key_digest(raw)  # a malformed key: 401 without a database read
    within_limit(await call.services.limiter.hit("balance", f"key:{digest}"))
    return await keys.lookup_async(call.services.database, digest)


def spendable(admission: Admission, now: float) -> dict[str, Any]:
    """The key's balance figures, in quota."""
    key = admission.key
    limits = [admission.user_quota]
    if not key.unlimited:
        limits.append(key.remain_quota)
    period_remaining = key.period_remaining(now)
    if period_remaining is not None:
        limits.append(period_remaining)
    available = max(min(limits), 0)
    own = available if key.unlimited else key.remain_quota
    return {
        "total_granted": key.used_quota + own,
        "total_used": key.used_quota,
        "total_available": available,
        "period_remaining": period_remaining,
    }


async def token_usage(call: Call) -> Answer:
    """new-api's `GET /api/usage/token`, then our fields."""
    admission = await _admission(call)
    key, now = admission.key, time.time()
    figures = spendable(admission, now)
    data = {
        "object": "token_usage",
        "name": key.name,
        "total_granted": figures["total_granted"],
        "total_used": figures["total_used"],
        "total_available": figures["total_available"],
        "unlimited_quota": key.unlimited,
        "model_limits": {model: True for model in sorted(key.models or ())},
        "model_limits_enabled": key.models is not None,
        "expires_at": key.expires_at or 0,
        # ours
        "state": key.state(now),
        "total_available_usd": format_usd(figures["total_available"]),
        "account_quota": admission.user_quota,
        "remain_quota": None if key.unlimited else key.remain_quota,
        "request_count": key.request_count,
        "period": key.period,
        "period_quota": key.period_quota,
        "period_used": key.period_used_now(now) if key.period else None,
        "period_remaining": figures["period_remaining"],
        "period_resets_at": key.period_resets_at(now),
    }
    body = {"success": True, "code": True, "message": None, "data": data}
    return Answer(200, orjson.dumps(body), _JSON)


def _usd(quota: int) -> float:
    """USD as the float OpenAI's legacy billing answers carry (display only)."""
    return float(Decimal(quota) / QUOTA_PER_USD)


async def billing_subscription(call: Call) -> Answer:
    """OpenAI's legacy subscription: the limit is what the key used plus what it may still
    spend, so that `hard_limit_usd - total_usage / 100` is what is left."""
    admission = await _admission(call)
    figures = spendable(admission, time.time())
    limit = _usd(figures["total_used"] + figures["total_available"])
    body = {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": limit,
        "hard_limit_usd": limit,
        "system_hard_limit_usd": limit,
        "access_until": admission.key.expires_at or 0,
    }
    return Answer(200, orjson.dumps(body), _JSON)


async def billing_usage(call: Call) -> Answer:
    """OpenAI's legacy usage: what the key has used, in US cents (`start_date` and
    `end_date` are ignored, as new-api does: the key's whole use)."""
    admission = await _admission(call)
    body = {"object": "list", "total_usage": _usd(admission.key.used_quota) * 100}
    return Answer(200, orjson.dumps(body), _JSON)
