"""Each account's token, from the environment variable or file the config names (a relative
`token_file` is relative to the config file's directory).

Tokens live only in memory, wrapped in `Secret`; `redact` scrubs them from any text that is
about to be stored, logged or sent, in case an error message ever echoes one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from quotaledger.client.redaction import redact as redact_one
from quotaledger.monitor.config import AccountConfig, WatchConfig
from quotaledger.monitor.tomlsource import TomlSource
from quotaledger.secret import Secret


def resolve_tokens(
    config: WatchConfig, environ: Mapping[str, str] | None = None
) -> dict[str, Secret]:
    """Account name -> token; `ConfigError` at the token_env/token_file line if one is missing."""
    environ = os.environ if environ is None else environ
    return {account.name: _token(config.source, account, environ) for account in config.accounts}


def _token(source: TomlSource, account: AccountConfig, environ: Mapping[str, str]) -> Secret:
    if account.token_env is not None:
        value = environ.get(account.token_env, "").strip()
        if not value:
            reason = f"environment variable {account.token_env} is not set or empty"
            raise source.error(account.section, "token_env", reason)
        return Secret(value)
    assert account.token_file is not None
    try:
        value = account.token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read {account.token_file}: {getattr(exc, 'strerror', None) or exc}"
        raise source.error(account.section, "token_file", reason) from None
    if not value:
        raise source.error(account.section, "token_file", f"{account.token_file} is empty")
    return Secret(value)


def redact(text: str, secrets: Iterable[Secret]) -> str:
    """`text` with every secret's value replaced by `***` (a token shorter than 8 characters
    only where it stands alone: see `quotaledger.client.redaction`)."""
    for secret in secrets:
        text = redact_one(text, secret.reveal())
    return text
