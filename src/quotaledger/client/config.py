"""What both clients are built from: the provider, its site, the token and the limits,
checked once, before anything is sent."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from quotaledger import __version__, tokens
from quotaledger.client import retry
from quotaledger.client.errors import ConfigurationError, MistypedTokenError
from quotaledger.client.exchange import Call, Site
from quotaledger.client.providers import Provider, provider_named

TOKEN_ENV = "QUOTALEDGER_TOKEN"  # noqa: S105 (the variable's name, not a secret)  # nosec B105
USER_AGENT = f"quotaledger/{__version__}"
_USER_ID = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class ClientConfig:
    provider: Provider
    site: Site
    token: str = field(repr=False)
    timeout: float
    policy: retry.RetryPolicy

    @classmethod
    def build(
        cls,
        base_url: str | None,
        token: str | None,
        *,
        provider: str | Provider,
        timeout: float,
        retries: int,
        user_id: str | int | None,
        backoff: float | None,
    ) -> ClientConfig:
        chosen = provider_named(provider) if isinstance(provider, str) else provider
        if not timeout > 0:
            raise ConfigurationError(f"timeout must be more than 0 seconds, got {timeout!r}")
        if retries < 0 or (backoff is not None and backoff < 0):
            raise ConfigurationError("retries and backoff must be 0 or more")
        return cls(
            provider=chosen,
            site=chosen.site(base_url, checked_user_id(user_id)),
            token=checked_credential(checked_token(token), chosen.credential),
            timeout=timeout,
            policy=retry.RetryPolicy(
                retries, retry.DEFAULT_BACKOFF if backoff is None else backoff
            ),
        )

    def url(self, call: Call) -> str:
        return self.site.base_url + call.path

    def headers(self, call: Call) -> dict[str, str]:
        return self.provider.headers(self.token, self.site) if call.authenticated else {}

    def describe(self) -> str:
        return f"provider={self.provider.name!r}, base_url={self.site.base_url!r}"


def checked_token(token: str | None) -> str:
    """The token, from the argument or `QUOTALEDGER_TOKEN`, stripped of surrounding space."""
    value = (os.environ.get(TOKEN_ENV, "") if token is None else token).strip()
    if value[:7].lower() == "bearer ":  # pasted with its scheme; each provider adds its own
        value = value[7:].strip()
    if not value:
        raise ConfigurationError(f"no token: pass token=... or set {TOKEN_ENV}")
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        # Checked here, because the HTTP library would otherwise fail with the header in its
        # message.
        raise ConfigurationError(
            "the token contains spaces or characters an HTTP header cannot carry; "
            "check where it was copied from"
        )
    if value.startswith(tokens.PREFIX) and not tokens.is_well_formed(value):
        # quotaledger tokens carry a checksum so that a typo is caught before it is sent.
        raise MistypedTokenError(
            "the token looks mistyped or truncated (its quotaledger checksum does not match): "
            "copy it again, or generate a new one under Account Settings, System Token"
        )
    return value


KEY_PREFIX = "sk-ql-"
"""quotaledger's API keys (`keys.py` on the server; not imported: it needs the store)."""


def checked_credential(value: str, credential: str) -> str:
    """`value`, refused before it is sent if it is plainly the other kind of credential: a
    system token where an API key is wanted, or the reverse; or a mistyped quotaledger key."""
    if credential == "key" and value.startswith(tokens.PREFIX):
        raise ConfigurationError(
            "this is a system token (ql_...): a key's own balance is read with the API key "
            "itself (sk-...); for the account's balance leave out --key-env/--key-file"
        )
    if credential == "token" and value.startswith(KEY_PREFIX):
        raise ConfigurationError(
            "this is an API key (sk-ql-...): read its own balance with --key-env/--key-file "
            "(provider newapi-key); the account's balance needs the system token (ql_...)"
        )
    if value.startswith(KEY_PREFIX) and not tokens.is_well_formed(value, KEY_PREFIX):
        raise MistypedTokenError(
            "the key looks mistyped or truncated (its quotaledger checksum does not match): "
            "copy it again; a key is shown only once, so if it is lost create a new one "
            "under Account Settings, API keys"
        )
    return value


def checked_user_id(user_id: str | int | None) -> str | None:
    """The numeric user id new-api wants in `New-Api-User`, as text; `None` for none."""
    if isinstance(user_id, bool):
        raise ConfigurationError("the user id must be your numeric user id, not true/false")
    user = "" if user_id is None else str(user_id).strip()
    if not user:
        return None
    if not _USER_ID.fullmatch(user):
        shown = user if user.isascii() and user.isprintable() and len(user) <= 20 else None
        got = f", got {shown!r}" if shown else ""
        raise ConfigurationError(
            f"the user id must be your numeric user id (digits only, shown on your account "
            f"page){got}"
        )
    return user


def default_headers() -> dict[str, str]:
    # Only the encodings `client.body` undoes within its cap: httpx would also offer br and
    # zstd where their packages happen to be installed.
    return {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",
    }
