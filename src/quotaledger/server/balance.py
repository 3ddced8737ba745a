"""`GET /api/user/self`: the caller's balance, asked with a system token (scripts and
monitors poll it) or from a browser session (the Account Settings page)."""

from __future__ import annotations

import functools

from quotaledger.identity.accounts import Account
from quotaledger.server.auth import authenticate, check_caller, token_account
from quotaledger.server.calls import Answer, Call, Headers
from quotaledger.server.errors import within_limit
from quotaledger.server.responses import envelope
from quotaledger.server.services import FixedPrices


async def user_self(call: Call) -> Answer:
    """The balance, or the refusal (401, 403, 429). A token's queries are counted per
    token, a session's per account."""
    services = call.services
    token = call.head.token
    if token is not None:
        account, said = await token_account(call, token, limit_token=True)
        check_caller(account, call.head.new_api_user)
    else:
        account = (await authenticate(call)).account
        said = within_limit(await services.limiter.hit("balance", f"user:{account.id}"))
    body = balance_body(account, await services.fixed_prices())
    return Answer(200, body, _raw(said) if said else ())


def balance_body(account: Account, fixed_prices: FixedPrices) -> bytes:
    """The balance answer's JSON. Monitors poll balances that rarely change between two
    polls: an answer is encoded once per (account row, prices) and reused while both stay
    the same (the row is still read from the database on every query). Answers with more
    than `_REMEMBERED_PRICES` per-call prices are not kept: the rest take ~4 MiB at most."""
    if len(fixed_prices) > _REMEMBERED_PRICES:
        return _encode(account, fixed_prices)
    return _remembered(account, fixed_prices)


_REMEMBERED_PRICES = 64


def _encode(account: Account, fixed_prices: FixedPrices) -> bytes:
    return envelope(account.as_api_json(dict(fixed_prices)))


_remembered = functools.lru_cache(maxsize=1024)(_encode)


def _raw(headers: dict[str, str]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
