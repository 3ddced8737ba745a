"""DeepSeek: `GET /user/balance`, one `balance_infos` entry per currency (CNY or USD).

`{"is_available": true, "balance_infos": [{"currency": "CNY", "total_balance": "110.00",
"granted_balance": "10.00", "topped_up_balance": "100.00"}]}`
"""

from __future__ import annotations

import re
from typing import Any

from quotaledger.client.balance import Balance
from quotaledger.client.errors import ProviderError
from quotaledger.client.exchange import Call, Plan, Reply, Site
from quotaledger.client.providers.base import Provider, as_decimal, required_amount

BALANCE = "/user/balance"
_CURRENCY = re.compile(r"[A-Za-z]{3}")


class DeepSeek(Provider):
    name = "deepseek"
    default_base_url = "https://api.deepseek.com"
    paths = (BALANCE,)

    def token_help(self, site: Site) -> str:
        return "Create a new API key at https://platform.deepseek.com/api_keys."

    def plan(self, site: Site) -> Plan:
        reply = yield Call(BALANCE)
        body = self.checked(reply, site)
        entry = _chosen_entry(body.get("balance_infos"), reply)
        return Balance(
            provider=self.name,
            amount=required_amount(entry, "total_balance", reply, "balance_infos[]."),
            currency=_currency(entry.get("currency"), reply),
            raw=body,
        )


def _currency(value: Any, reply: Reply) -> str:
    """A three-letter code (it is printed, and named in `check`'s perfdata); CNY if absent."""
    if value is None or value == "":
        return "CNY"
    if isinstance(value, str) and _CURRENCY.fullmatch(value):
        return value.upper()
    raise ProviderError(
        f"{reply.host} answered with a currency that is not a three-letter code ({reply.url}); "
        "is the provider right?",
        status_code=reply.status,
    )


def _chosen_entry(infos: Any, reply: Reply) -> dict[str, Any]:
    """An account has one currency in practice; if several, the one holding money, USD first."""
    entries = (
        [entry for entry in infos if isinstance(entry, dict)] if isinstance(infos, list) else []
    )
    if not entries:
        raise ProviderError(
            f"{reply.host} answered without balance_infos ({reply.url}); is the provider right?",
            status_code=reply.status,
        )
    funded = [e for e in entries if (as_decimal(e.get("total_balance")) or 0) > 0] or entries
    return next((e for e in funded if e.get("currency") == "USD"), funded[0])
