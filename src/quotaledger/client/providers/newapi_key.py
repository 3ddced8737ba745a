"""One API key's own balance on quotaledger or a new-api relay: `GET /api/usage/token`.

Both answer the key itself (`Authorization: Bearer sk-...`; no system token, no user id) with
`data: {object: "token_usage", name, total_granted, total_used, total_available,
unlimited_quota, model_limits, expires_at}`. What differs, and what we therefore accept:
- the envelope: quotaledger's `{success: true, message: null, data}`, new-api's
  `{code: true, message: "ok", data}`; a refusal is `success: false` (new-api answers an
  unknown key so, with HTTP 200 or 401) or `code: false`;
- new-api registers the route as `/api/usage/token/` and redirects the bare path there (same
  origin: the key goes along);
- new-api's `model_limits` is a map `{model: true}`; a list of names is read too;
- `expires_at`: Unix seconds, 0 (new-api) or null for never; an ISO 8601 time is read too.
`quota_per_unit` comes from `/api/status` as for accounts (`newapi`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from quotaledger.client.errors import ProviderError
from quotaledger.client.exchange import Call, Plan, Reply, Site
from quotaledger.client.key_balance import KeyBalance
from quotaledger.client.providers.base import as_int, data_object, int64_field
from quotaledger.client.providers.newapi import STATUS, NewAPI
from quotaledger.client.statuses import message_in
from quotaledger.money import quota_to_usd

USAGE = "/api/usage/token"
_LAST_SECOND = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp())


class NewAPIKey(NewAPI):
    name = "newapi-key"
    paths = (USAGE, STATUS)
    credential = "key"

    def headers(self, token: str, site: Site) -> dict[str, str]:
        # new-api's usage route wants the Bearer scheme: a bare key is "Invalid Bearer token".
        return {"Authorization": f"Bearer {token}"}

    def token_help(self, site: Site) -> str:
        return (
            f"Create a new API key on {site.base_url} (Account Settings, API keys); "
            "a key is shown only once, when it is created."
        )

    def plan(self, site: Site) -> Plan:
        reply = yield Call(USAGE)
        body = self.checked(reply, site)
        if body.get("success") is False or body.get("code") is False:
            raise self.refusal(message_in(body, reply.secret) or "no reason given", reply, site)
        data = data_object(body, reply)
        available = _required_quota(data, "total_available", reply)
        used = _required_quota(data, "total_used", reply)
        granted = int64_field(data, "total_granted", reply, "data.")
        yield from self.learn_unit()
        return self._key_balance(data, body, available, used, granted)

    def _key_balance(
        self,
        data: dict[str, Any],
        body: dict[str, Any],
        available: int,
        used: int,
        granted: int | None,
    ) -> KeyBalance:
        name = data.get("name")
        return KeyBalance(
            provider=self.name,
            amount=quota_to_usd(available, self.unit),
            currency="USD",
            quota=available,
            used_quota=used,
            used_amount=quota_to_usd(used, self.unit),
            quota_per_unit=self.unit,
            raw=body,
            name=name if isinstance(name, str) and name else None,
            unlimited=data.get("unlimited_quota") is True,
            granted_quota=available + used if granted is None else granted,
            expires_at=_expiry(data.get("expires_at")),
            models=_models(data.get("model_limits")),
        )


def _required_quota(data: Mapping[str, Any], key: str, reply: Reply) -> int:
    value = int64_field(data, key, reply, "data.")
    if value is None:
        raise ProviderError(
            f"{reply.host} answered without an integer data.{key} ({reply.url}); is it "
            "quotaledger or a new-api relay, and the key an API key (sk-...)?",
            status_code=reply.status,
        )
    return value


def _expiry(value: Any) -> datetime | None:
    """Unix seconds (or an ISO 8601 time with its offset); 0, -1, null or anything unusable:
    never (we do not invent a date)."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdecimal():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return moment.astimezone(UTC) if moment.tzinfo is not None else None
    seconds = as_int(value)
    if seconds is None or not 0 < seconds <= _LAST_SECOND:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _models(value: Any) -> tuple[str, ...]:
    """new-api's `{model: true}` map (false entries are not allowed) or a list of names."""
    if isinstance(value, Mapping):
        names = [name for name, allowed in value.items() if allowed is True]
    elif isinstance(value, list):
        names = list(value)
    else:
        return ()
    return tuple(sorted({name for name in names if isinstance(name, str) and name}))
