"""`POST /api/usage`: the operator's gateway charges one request (admin token); a replayed
`request_id` is charged once."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from quotaledger.billing import ledger
from quotaledger.errors import QuotaLedgerError
from quotaledger.server.auth import account_by_token, require_admin
from quotaledger.server.bodies import parse_json
from quotaledger.server.calls import Answer, Call
from quotaledger.server.responses import envelope


class UsageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    request_id: str = Field(min_length=1, max_length=128)
    prompt_tokens: int = Field(default=0, ge=0, le=ledger.MAX_TOKENS)
    completion_tokens: int = Field(default=0, ge=0, le=ledger.MAX_TOKENS)


async def charge_usage(call: Call) -> Answer:
    """Charge one usage record: 401/403 come before any 422, then 402/404/409 from the
    ledger (which change nothing), or 503 when SQLite stayed busy."""
    require_admin(await account_by_token(call))
    usage = parse_json(UsageBody, call.body)
    request = ledger.UsageRequest(
        username=usage.username,
        model=usage.model,
        request_id=usage.request_id,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )
    metrics = call.services.metrics
    try:
        result = await ledger.charge_async(call.services.database, request)
    except QuotaLedgerError as exc:
        metrics.count_charge(type(exc).__name__)
        raise
    if result.replayed:
        metrics.count_charge("replayed")
    else:
        metrics.count_charge("charged", result.quota_charged)
        call.services.alerts.charged(usage.username, result.quota_remaining)
    data = {
        "request_id": result.request_id,
        "quota_charged": result.quota_charged,
        "quota_remaining": result.quota_remaining,
    }
    return Answer(200, envelope(data))
