"""Watching one API key (`key_env`/`key_file`): its own budget, or its account's balance.

A key with a budget is watched on what it may still spend (`total_available`), and its
forecast reads its cumulative `total_used` as an account's reads `used_quota`. An unlimited
key has no budget: it spends its account's balance, so that balance is what runs out and what
the thresholds apply to, read with the account's token. Without that token an unlimited key
is a failed poll that says what to add (whether a key is unlimited is known only from the
server's answer, never at config load).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any

from quotaledger.client import Balance, BalanceError, KeyBalance
from quotaledger.client.printable import printable

_MAX_LABEL = 80  # a server's key name, stored with every poll: kept short


@dataclass(frozen=True)
class AccountBehindKey(Balance):
    """The account's balance, watched because `key` is unlimited."""

    key: KeyBalance | None = None


class UnlimitedKeyWithoutToken(BalanceError):
    """An unlimited key, and no account token to read the balance it spends."""


class KeyWatch:
    """The balance source of an account that watches a key (what the watcher polls)."""

    def __init__(self, key: Any, account: Any | None) -> None:
        # Async context managers with `key_balance()` / `balance()` (AsyncBalanceClient).
        self._key, self._account = key, account

    async def balance(self) -> Balance:
        key: KeyBalance = await self._key.key_balance()
        if not key.unlimited:
            return key
        if self._account is None:
            raise UnlimitedKeyWithoutToken(
                f"{label(key)} is unlimited: it spends its account's balance, which a key "
                "cannot read; add token_env (or token_file) with the account's system token "
                "to watch that balance"
            )
        account: Balance = await self._account.balance()
        values = {field.name: getattr(account, field.name) for field in fields(Balance)}
        return AccountBehindKey(**values, key=key)

    async def __aenter__(self) -> KeyWatch:
        await self._key.__aenter__()
        if self._account is not None:
            try:
                await self._account.__aenter__()
            except BaseException:
                await self._key.__aexit__(None, None, None)
                raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._account is not None:
                await self._account.__aexit__(kind, exc, tb)
        finally:
            await self._key.__aexit__(kind, exc, tb)


def label(key: KeyBalance) -> str:
    """`key laptop`, printable and short (the name is the server's text)."""
    text = printable(key.label())
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def watched(balance: Balance) -> str | None:
    """What a poll's balance is of, for the history: `key laptop`, `the account (key laptop
    is unlimited)`, or `None` for an account's own balance."""
    if isinstance(balance, KeyBalance):
        return label(balance)
    if isinstance(balance, AccountBehindKey) and balance.key is not None:
        return f"the account ({label(balance.key)} is unlimited)"
    return None
