"""Keeping the token out of everything the client hands back: error messages and the raw
payload of a `Balance` (some one-api/new-api forks put `access_token` in `data`).

Tokens of fewer than `SHORT_TOKEN` characters are replaced only where they stand alone, never
inside a longer word: `redact("balance 42", "4")` must not print "balance ***2".
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from quotaledger.client.balance import Balance

MASK = "***"
SHORT_TOKEN = 8
_WORD_CHARS = "0-9A-Za-z_-"  # what a token is made of: a short one is matched alone
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:access_?token|token|key|api_?key|password|passwd|secret|authorization)s?$"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def redact(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` replaced by `***` (whole occurrences only for a
    short secret)."""
    if not secret or secret not in text:
        return text
    if len(secret) >= SHORT_TOKEN:
        return text.replace(secret, MASK)
    alone = rf"(?<![{_WORD_CHARS}]){re.escape(secret)}(?![{_WORD_CHARS}])"
    return re.sub(alone, MASK, text)


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")


def without_userinfo(text: str) -> str:
    """`text` with the `user:password@` of any URL in it replaced by `***@` (a proxy's or a
    base URL's credentials, quoted by an HTTP library's error)."""
    return _USERINFO.sub(r"\1***@", text)


@functools.lru_cache(maxsize=4096)  # payloads repeat their keys: the watcher's every poll
def is_secret_key(name: str) -> bool:
    """`access_token`, `token`, `apiKey`, `client_secret`, `Password`...: a key whose value may
    be a credential. `token_hint` or `used_quota` are not."""
    snake = _CAMEL.sub("_", name).lower().replace("-", "_")
    return bool(_SECRET_KEY.search(snake))


def scrub(value: Any, secret: str) -> Any:
    """A copy of a JSON value without secret-looking keys (at any depth, except flags such as
    `is_management_key: false`) and without strings equal to `secret`; other strings holding
    it have it replaced by `***`."""
    if isinstance(value, Mapping):
        return _scrub_mapping(value, secret)
    if isinstance(value, list | tuple):
        return [scrub(item, secret) for item in value if not _is_token(item, secret)]
    if isinstance(value, str):
        return redact(value, secret)
    return value


def _scrub_mapping(mapping: Mapping[Any, Any], secret: str) -> dict[Any, Any]:
    # Every balance of every poll comes through here: plain values are handled in line,
    # without a call per value.
    kept: dict[Any, Any] = {}
    for key, item in mapping.items():
        kind = type(item)
        if is_secret_key(str(key)):
            if kind is bool or item is None:  # a flag such as `is_management_key: false`
                kept[key] = item
        elif kind in _PLAIN:
            kept[key] = item
        elif not _is_token(item, secret):
            kept[key] = redact(item, secret) if kind is str else scrub(item, secret)
    return kept


_PLAIN = frozenset({int, float, bool, type(None), Decimal})


def without_secrets(balance: Balance, secret: str) -> Balance:
    """`balance` with its `raw` payload scrubbed (see `scrub`)."""
    return dataclasses.replace(balance, raw=scrub(balance.raw, secret))


def _is_token(value: Any, secret: str) -> bool:
    return bool(secret) and isinstance(value, str) and value.strip() == secret
