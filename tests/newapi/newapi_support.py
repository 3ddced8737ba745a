"""Log rows for the new-api tests, written the way the server writes them: the relay's by
reserve-then-settle (`settlement.settle`), the admin path's by `ledger.charge`."""

from __future__ import annotations

import itertools

from quotaledger.billing import ledger, pricing
from quotaledger.billing.reservations import reserve
from quotaledger.billing.settlement import Outcome, settle
from quotaledger.identity import keys
from quotaledger.identity.keys import ApiKey, KeyLimits
from quotaledger.store.database import Database
from quotaledger.token_usage import TokenUsage, UsageSource

MODEL = "gpt-test"  # 2 USD in, 8 USD out per million tokens: input + 4 x output quota
FIXED = "fixed-test"  # 0.02 USD per call: 10,000 quota
_ids = itertools.count()


def price_models(database: Database) -> None:
    pricing.set_price(
        database, pricing.make_price(MODEL, input_usd_per_mtok="2", output_usd_per_mtok="8")
    )
    pricing.set_price(database, pricing.make_price(FIXED, per_call_usd="0.02"))


def make_key(database: Database, user_id: int, name: str = "laptop", **limits: object) -> ApiKey:
    key, _ = keys.create_key(database, user_id, name, KeyLimits(**limits))  # type: ignore[arg-type]
    return key


def relay_row(
    database: Database, key: ApiKey, *, input_tokens: int = 100, output_tokens: int = 50,
    status: int = 200, request_id: str | None = None,
) -> str:  # fmt: skip
    """One relayed request, settled: a log row as the relay writes it."""
    request_id = request_id or f"relay-{next(_ids)}"
    reserve(database, request_id, user_id=key.user_id, key_id=key.id, model=MODEL,
            group="default", amount=10_000)  # fmt: skip
    used = TokenUsage(
        input=input_tokens, cache_read=10, output=output_tokens, source=UsageSource.UPSTREAM
    )
    outcome = Outcome(
        status, used, end_reason="stop", upstream_model="gpt-test-2026",
        channel="main", is_stream=True, latency_ms=1_600, ttft_ms=250,
        session_id="6f1c2a9e-claude-code-session",
    )  # fmt: skip
    settle(database, request_id, key.user_id, outcome)
    return request_id


def admin_row(database: Database, username: str, request_id: str | None = None) -> str:
    """One admin charge (`POST /api/usage`'s path): a log row without relay columns."""
    request_id = request_id or f"admin-{next(_ids)}"
    ledger.charge(database, ledger.UsageRequest(username, FIXED, request_id, 3, 4))
    return request_id
