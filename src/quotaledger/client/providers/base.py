"""What every provider shares: the `Provider` base class and small parsing helpers.

To add a provider: write a module with a `Provider` subclass (its name, default site, the
paths it calls, where to get a new token, and `plan()`), then add it to `PROVIDERS`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from quotaledger.client.errors import BalanceError, ConfigurationError, ProviderError
from quotaledger.client.exchange import Plan, Reply, Site, json_object
from quotaledger.client.redaction import without_userinfo
from quotaledger.client.statuses import refusal_error, status_error


class Provider(ABC):
    """One balance API, described without doing any I/O."""

    name: ClassVar[str]
    default_base_url: ClassVar[str | None]
    paths: ClassVar[tuple[str, ...]]
    """Every path `plan()` may call; also stripped from a pasted base URL."""
    api_prefix: ClassVar[str] = "/v1"
    """The OpenAI-compatible prefix people paste as their base URL; stripped too."""
    credential: ClassVar[str] = "token"
    """What the provider is given: an account's `token`, or an API `key` (`newapi-key`)."""

    @abstractmethod
    def plan(self, site: Site) -> Plan:
        """Yield the calls, return the `Balance`; raise a `BalanceError` for anything else."""

    @abstractmethod
    def token_help(self, site: Site) -> str:
        """One sentence: where to get a new token."""

    def headers(self, token: str, site: Site) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def site(self, base_url: str | None, user_id: str | None = None) -> Site:
        """The site root for `base_url` (or the provider's default), forgiving pasted paths."""
        url = base_url.strip() if base_url else self.default_base_url
        if not url:
            raise ConfigurationError(
                f"provider {self.name!r} has no default site: give its base URL "
                "(--base-url or QUOTALEDGER_BASE_URL), e.g. https://api.example.com"
            )
        return Site(site_root(url, (*self.paths, self.api_prefix)), user_id)

    def checked(self, reply: Reply, site: Site) -> dict[str, Any]:
        """The JSON object of a successful reply; the right `BalanceError` otherwise."""
        if reply.status >= 400:
            raise self.status_error(reply, site)
        return json_object(reply)

    def status_error(self, reply: Reply, site: Site) -> BalanceError:
        return status_error(reply, token_help=self.token_help(site), provider=self.name)

    def refusal(self, message: str, reply: Reply, site: Site) -> BalanceError:
        """A `success: false` (or `status: false`) answer with a 2xx status."""
        return refusal_error(
            message, host=reply.host, token_help=self.token_help(site), status_code=reply.status
        )


def site_root(url: str, suffixes: tuple[str, ...]) -> str:
    """`https://relay.example.com/v1/` -> `https://relay.example.com`; a `ConfigurationError`
    for anything that is not an http(s) URL of a host name or address."""
    shown = without_userinfo(url)
    if "://" not in url:
        # Guessing https sent people with an http-only relay (`127.0.0.1:8000`) into three
        # TLS failures; guessing http would send the token in clear to an https one.
        raise ConfigurationError(
            f"the base URL {shown!r} has no scheme: add http:// or https:// "
            "(e.g. https://api.example.com)"
        )
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(f"not an http(s) URL: {shown!r}")
    try:
        _ = parts.port  # a port out of range or not a number raises here
        host = parts.hostname.encode("idna").decode("ascii")  # so does a label DNS refuses
    except (ValueError, UnicodeError) as exc:
        raise ConfigurationError(f"not a usable URL: {shown!r} ({exc})") from None
    if not _HOST.fullmatch(host) or not url.isprintable() or any(c.isspace() for c in url):
        raise ConfigurationError(
            f"not a usable URL: {shown!r} (a URL has no spaces, a host name no symbols: "
            "give the site root, e.g. https://api.example.com)"
        )
    path = parts.path.rstrip("/")
    for suffix in sorted(suffixes, key=len, reverse=True):
        if path.endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


_HOST = re.compile(r"[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.%A-Za-z]*")
"""A DNS name (after IDNA) or an IPv4 address, or an IPv6 address (urlsplit drops its [])."""


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""What one-api/new-api (and SQLite) store a quota in: anything outside is not a quota."""
MAX_AMOUNT = Decimal(10) ** 18
"""No balance is this large; a number beyond it is garbage (and too long to write out)."""


def as_int(value: Any) -> int | None:
    """An integer from JSON (`12`, `12.0`, `"12"`); `None` for anything else, booleans too,
    and for numbers far beyond any 64-bit integer (`1e999999` would take seconds to convert)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    number = as_decimal(value)
    if number is None or number.adjusted() > 40 or number != number.to_integral_value():
        return None
    return int(number)


def int64_field(data: Mapping[str, Any], key: str, reply: Reply, where: str) -> int | None:
    """`data[key]` as an integer (`None` if absent or not an integer), or a `ProviderError` if
    it is out of the signed 64-bit range every one-api/new-api server stores quota in."""
    value = data.get(key)
    number = as_decimal(value) if not isinstance(value, int) else value
    if number is not None and not isinstance(value, bool) and not INT64_MIN <= number <= INT64_MAX:
        raise ProviderError(
            f"{reply.host} answered with a {where}{key} out of range (beyond a signed 64-bit "
            f"integer, {reply.url}): no account holds that much; is it a one-api/new-api server?",
            status_code=reply.status,
        )
    return as_int(value)


def as_decimal(value: Any) -> Decimal | None:
    """An exact number from JSON: an int, a `Decimal` (see `parse_json`) or a numeric string."""
    if not isinstance(value, int | float | Decimal | str) or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())  # str() keeps a float's shortest repr
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def required_amount(body: Mapping[str, Any], key: str, reply: Reply, where: str) -> Decimal:
    """`body[key]` as a number, or a `ProviderError` naming the missing field."""
    number = as_decimal(body.get(key))
    if number is None:
        raise ProviderError(
            f"{reply.host} answered without a numeric {where}{key} ({reply.url}); "
            "is the provider right?",
            status_code=reply.status,
        )
    if abs(number) >= MAX_AMOUNT:
        raise ProviderError(
            f"{reply.host} answered with a {where}{key} out of range (10^18 or more, "
            f"{reply.url}); is the provider right?",
            status_code=reply.status,
        )
    return number


def data_object(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise ProviderError(
            f"{reply.host} answered without a `data` object ({reply.url}); is the provider right?",
            status_code=reply.status,
        )
    return data
