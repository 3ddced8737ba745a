"""SiliconFlow: `GET /v1/user/info`, `data.totalBalance` (gift balance plus paid balance).

`{"code": 20000, "message": "OK", "status": true, "data": {"balance": "0.88",
"chargeBalance": "88.00", "totalBalance": "88.88", ...}}`, in CNY on siliconflow.cn and in
USD on the international siliconflow.com (the answer itself names no currency).
"""

from __future__ import annotations

from quotaledger.client.balance import Balance
from quotaledger.client.exchange import Call, Plan, Site
from quotaledger.client.providers.base import Provider, data_object, required_amount
from quotaledger.client.statuses import message_in

USER_INFO = "/v1/user/info"
SUCCESS_CODE = 20000


class SiliconFlow(Provider):
    name = "siliconflow"
    default_base_url = "https://api.siliconflow.cn"
    paths = (USER_INFO,)

    def token_help(self, site: Site) -> str:
        return "Create a new API key at https://cloud.siliconflow.cn/account/ak."

    def plan(self, site: Site) -> Plan:
        reply = yield Call(USER_INFO)
        body = self.checked(reply, site)
        code = body.get("code")
        if body.get("status") is False or code not in (None, SUCCESS_CODE):
            raise self.refusal(message_in(body, reply.secret) or f"code {code}", reply, site)
        data = data_object(body, reply)
        return Balance(
            provider=self.name,
            amount=required_amount(data, "totalBalance", reply, "data."),
            currency="USD" if site.host.endswith("siliconflow.com") else "CNY",
            raw=body,
        )
