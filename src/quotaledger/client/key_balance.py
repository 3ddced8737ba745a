"""`KeyBalance`: what one API key may still spend, read with the key itself.

quotaledger and new-api relays answer `GET /api/usage/token` to the key in
`Authorization: Bearer sk-...` (SPEC §9). A key either has a budget of its own (its
`remain_quota`, here `quota`) or is *unlimited*: it spends its owner's account balance, which
the key cannot see. For an unlimited key `amount` and `quota` are whatever the server calls
available (new-api keeps a stale `remain_quota` there), so they limit nothing: read
`unlimited` first, as the CLI and the watcher do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from quotaledger.client.balance import Balance
from quotaledger.client.errors import ConfigurationError


@dataclass(frozen=True)
class KeyBalance(Balance):
    """A `Balance` of one key: `quota`/`amount` what it may still spend (`total_available`),
    `used_quota`/`used_amount` what it spent since it was created (`total_used`, cumulative:
    the watcher's forecast reads it as it reads an account's `used_quota`)."""

    name: str | None = None
    unlimited: bool = False
    granted_quota: int | None = None
    """`total_granted`: what the key was given in all (available + used)."""
    expires_at: datetime | None = None
    """UTC; `None` when the key never expires."""
    models: tuple[str, ...] = ()
    """The models the key is limited to; empty: every model the account may use."""

    def label(self) -> str:
        """`key laptop`, or `key` when the server gave no name."""
        return f"key {self.name}" if self.name else "key"


def as_key_balance(balance: Balance) -> KeyBalance:
    """`balance`, typed, if a key provider answered it; a `ConfigurationError` otherwise."""
    if not isinstance(balance, KeyBalance):
        raise ConfigurationError(
            f"provider {balance.provider!r} reads an account's balance, not a key's: "
            'use provider="newapi-key" with the API key'
        )
    return balance
