"""Each account's token and API key, from the environment variable or file the config names
(a relative `token_file` or `key_file` is relative to the config file's directory).

Tokens live only in memory, wrapped in `Secret`; `redact` scrubs them from any text that is
about to be stored, logged or sent, in case an error message ever echoes one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from quotaledger.client.redaction import redact as redact_one
from quotaledger.monitor.config import AccountConfig, WatchConfig
from quotaledger.monitor.tomlsource import TomlSource
from quotaledger.secret import Secret


def resolve_tokens(
    config: WatchConfig, environ: Mapping[str, str] | None = None
) -> dict[str, Secret]:
    """Account name -> token, for the accounts that have one; `ConfigError` at the
    token_env/token_file line if one is missing."""
    environ = os.environ if environ is None else environ
    return {
        account.name: _secret(config.source, account, "token", environ)
        for account in config.accounts
        if account.has_token
    }


def resolve_keys(
    config: WatchConfig, environ: Mapping[str, str] | None = None
) -> dict[str, Secret]:
    """Account name -> API key, for the accounts that watch one (key_env/key_file)."""
    environ = os.environ if environ is None else environ
    return {
        account.name: _secret(config.source, account, "key", environ)
        for account in config.accounts
        if account.watches_key
    }


def _secret(
    source: TomlSource, account: AccountConfig, kind: str, environ: Mapping[str, str]
) -> Secret:
    """The `token` or `key` of `account`, from its `<kind>_env` or `<kind>_file`."""
    env_name: str | None = getattr(account, f"{kind}_env")
    if env_name is not None:
        value = environ.get(env_name, "").strip()
        if not value:
            reason = f"environment variable {env_name} is not set or empty"
            raise source.error(account.section, f"{kind}_env", reason)
        return Secret(value)
    path: Path = getattr(account, f"{kind}_file")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        raise source.error(account.section, f"{kind}_file", reason) from None
    if not value:
        raise source.error(account.section, f"{kind}_file", f"{path} is empty")
    return Secret(value)


def redact(text: str, secrets: Iterable[Secret]) -> str:
    """`text` with every secret's value replaced by `***` (a token shorter than 8 characters
    only where it stands alone: see `quotaledger.client.redaction`)."""
    for secret in secrets:
        text = redact_one(text, secret.reveal())
    return text
