"""Moonshot (Kimi): `GET /v1/users/me/balance`, `data.available_balance`.

`{"code": 0, "data": {"available_balance": 49.58894, "voucher_balance": 46.58893,
"cash_balance": 3.00001}, "scode": "0x0", "status": true}`: CNY on api.moonshot.cn, USD on
api.moonshot.ai (the answer names no currency). `cash_balance` goes negative when the
account owes money; `available_balance` (cash plus vouchers) is what can still be spent.
"""

from __future__ import annotations

from quotaledger.client.balance import Balance
from quotaledger.client.exchange import Call, Plan, Site
from quotaledger.client.providers.base import Provider, data_object, required_amount
from quotaledger.client.statuses import message_in

BALANCE = "/v1/users/me/balance"


class Moonshot(Provider):
    name = "moonshot"
    default_base_url = "https://api.moonshot.cn"
    paths = (BALANCE,)

    def token_help(self, site: Site) -> str:
        console = "platform.moonshot.ai" if _is_international(site) else "platform.moonshot.cn"
        return f"Create a new API key at https://{console}/console/api-keys."

    def plan(self, site: Site) -> Plan:
        reply = yield Call(BALANCE)
        body = self.checked(reply, site)
        code = body.get("code")
        if body.get("status") is False or code not in (None, 0):
            raise self.refusal(message_in(body, reply.secret) or f"code {code}", reply, site)
        data = data_object(body, reply)
        return Balance(
            provider=self.name,
            amount=required_amount(data, "available_balance", reply, "data."),
            currency="USD" if _is_international(site) else "CNY",
            raw=body,
        )


def _is_international(site: Site) -> bool:
    return site.host.endswith("moonshot.ai")
