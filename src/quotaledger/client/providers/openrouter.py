"""OpenRouter, in USD.

`GET /api/v1/credits` gives the account's `total_credits` and `total_usage`, but only to a
management key: an ordinary key gets 403 (or, observed though undocumented, a 200 with two
zeros). For those we read `GET /api/v1/key`, whose `limit_remaining` is what that key may
still spend; a key without a limit learns nothing about the account, and we say so.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from quotaledger.client.balance import Balance
from quotaledger.client.errors import ProviderError
from quotaledger.client.exchange import Call, Plan, Reply, Site
from quotaledger.client.providers.base import (
    Provider,
    as_decimal,
    data_object,
    required_amount,
)

CREDITS = "/api/v1/credits"
KEY = "/api/v1/key"


class OpenRouter(Provider):
    name = "openrouter"
    default_base_url = "https://openrouter.ai"
    paths = (CREDITS, KEY)
    api_prefix = "/api/v1"

    def token_help(self, site: Site) -> str:
        return "Create a new key at https://openrouter.ai/settings/keys."

    def plan(self, site: Site) -> Plan:
        reply = yield Call(CREDITS)
        if reply.status != 403:
            body = self.checked(reply, site)
            data = data_object(body, reply)
            credits = required_amount(data, "total_credits", reply, "data.")
            usage = required_amount(data, "total_usage", reply, "data.")
            if credits or usage:
                return self._balance(credits - usage, usage, body)
        key_reply = yield Call(KEY)
        body = self.checked(key_reply, site)
        key = data_object(body, key_reply)
        remaining = as_decimal(key.get("limit_remaining"))
        if remaining is not None:
            return self._balance(remaining, as_decimal(key.get("usage")), body)
        if key.get("is_management_key") is True:
            return self._balance(Decimal(0), Decimal(0), body)  # the zeros were real
        raise _no_limit_error(key_reply)

    def _balance(self, amount: Decimal, used: Decimal | None, body: dict[str, Any]) -> Balance:
        return Balance(
            provider=self.name, amount=amount, currency="USD", used_amount=used, raw=body
        )


def _no_limit_error(reply: Reply) -> ProviderError:
    return ProviderError(
        f"{reply.host} tells an ordinary key without a credit limit nothing about the "
        "account's credits: use a management key (https://openrouter.ai/settings/"
        "management-keys), or set a credit limit on this key.",
        status_code=reply.status,
    )
