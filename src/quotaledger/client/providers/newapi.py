"""quotaledger, one-api, new-api and the relays built on them: `GET /api/user/self`.

What real servers of this family do, and what we therefore accept:
- `message: ""` (not `null`) on success, extra fields, `ModelFixedPrice` of any shape;
- a negative `quota` (upstream debits have no floor);
- HTTP 200 with `success: false` for a refused token (older one-api and new-api);
- gzip whatever `Accept-Encoding` said, labelled or not (`client.body` undoes it);
- new-api wants `New-Api-User: <user id>` next to the token, and says so in its 401;
- `quota_per_unit` published by `GET /api/status`, which we use instead of assuming 500,000.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import Any

from quotaledger.client.balance import Balance
from quotaledger.client.errors import AuthenticationError, BalanceError, ProviderError
from quotaledger.client.exchange import Call, Plan, Reply, Site, parse_json_content
from quotaledger.client.providers.base import (
    INT64_MAX,
    Provider,
    as_decimal,
    data_object,
    int64_field,
)
from quotaledger.client.statuses import message_in, server_message
from quotaledger.money import QUOTA_PER_USD, quota_to_usd

SELF = "/api/user/self"
STATUS = "/api/status"
STATUS_CALL = Call(STATUS, authenticated=False, best_effort=True, shared=True)
"""The same answer for every account of a server: asked once for many clients sharing one
`SharedReplies` (the watcher's accounts of one relay)."""


class NewAPI(Provider):
    name = "newapi"
    default_base_url = None  # a relay's own site; there is no one default
    paths = (SELF, STATUS)

    def __init__(self) -> None:
        # Published once per server; asked for once per client, and not again after an
        # answer without one (a network failure is asked again at the next balance).
        self._quota_per_unit: int | None = None
        self._status_known = False

    def headers(self, token: str, site: Site) -> dict[str, str]:
        # The raw token, as these servers document it (they accept "Bearer <token>" too).
        headers = {"Authorization": token}
        if site.user_id:
            headers["New-Api-User"] = site.user_id
        return headers

    def token_help(self, site: Site) -> str:
        return (
            f"Generate a new system token on {site.base_url} (Account Settings, System Token); "
            "it replaces the old one."
        )

    def plan(self, site: Site) -> Plan:
        reply = yield Call(SELF)
        body = self.checked(reply, site)
        if body.get("success") is False:
            raise self.refusal(message_in(body, reply.secret) or "no reason given", reply, site)
        data = data_object(body, reply)
        quota = int64_field(data, "quota", reply, "data.")
        if quota is None:
            raise ProviderError(
                f"{reply.host} answered without an integer data.quota ({reply.url}); "
                "is it a one-api/new-api server?",
                status_code=reply.status,
            )
        used = int64_field(data, "used_quota", reply, "data.")
        requests = int64_field(data, "request_count", reply, "data.")
        yield from self.learn_unit()
        return self._balance(quota, used, requests, data, body)

    def learn_unit(self) -> Generator[Call, Reply, None]:
        """Ask `/api/status` for `quota_per_unit`, once per client (see `unit`)."""
        if not self._status_known:
            status = yield STATUS_CALL
            self._quota_per_unit = published_quota_per_unit(status)
            # A server that answered without a unit will not publish one at the next poll;
            # no answer at all (status 0) or a server error may be passing.
            self._status_known = status.status != 0 and status.status < 500

    @property
    def unit(self) -> int:
        """Quota per USD: the server's published unit, else 500,000."""
        return self._quota_per_unit or QUOTA_PER_USD

    def _balance(
        self,
        quota: int,
        used: int | None,
        requests: int | None,
        data: dict[str, Any],
        body: dict[str, Any],
    ) -> Balance:
        unit = self.unit
        group = data.get("group")
        return Balance(
            provider=self.name,
            amount=quota_to_usd(quota, unit),
            currency="USD",
            quota=quota,
            used_quota=used,
            request_count=requests,
            group=group if isinstance(group, str) and group else None,
            used_amount=None if used is None else quota_to_usd(used, unit),
            quota_per_unit=unit,
            raw=body,
        )

    def status_error(self, reply: Reply, site: Site) -> BalanceError:
        message = server_message(reply)
        if reply.status == 401 and message and _names_user_header(message):
            return _user_id_error(f"HTTP 401: {message}", reply, site)
        return super().status_error(reply, site)

    def refusal(self, message: str, reply: Reply, site: Site) -> BalanceError:
        if _names_user_header(message):
            return _user_id_error(message, reply, site)
        return super().refusal(message, reply, site)


def published_quota_per_unit(reply: Reply) -> int | None:
    """`data.quota_per_unit` of `GET /api/status`, if the server publishes a usable one."""
    return _unit_published_in(reply.content) if reply.ok else None


@functools.lru_cache(maxsize=256)
def _unit_published_in(content: bytes) -> int | None:
    # Read once per distinct answer: a watcher's clients of one relay share one.
    body = parse_json_content(content)
    data = body.get("data") if isinstance(body, dict) else None
    unit = as_decimal(data.get("quota_per_unit")) if isinstance(data, dict) else None
    if unit is None or not 0 < unit <= INT64_MAX or unit != unit.to_integral_value():
        return None
    return int(unit)


def _names_user_header(message: str) -> bool:
    return "new-api-user" in message.lower()


def _user_id_error(detail: str, reply: Reply, site: Site) -> AuthenticationError:
    if site.user_id:
        advice = (
            f"user id {site.user_id} is not the owner of this token: use the numeric id "
            "shown on your account page"
        )
    else:
        advice = (
            "new-api checks your numeric user id (shown on your account page) in the "
            "New-Api-User header: pass --user-id ID, set QUOTALEDGER_USER_ID, or give user_id="
        )
    return AuthenticationError(
        f"{reply.host} refused the request ({detail}): {advice}.", status_code=reply.status
    )
