"""The balance of a prepaid LLM API account, from quotaledger, any one-api / new-api relay,
OpenRouter, DeepSeek, SiliconFlow or Moonshot, in one typed `Balance`.

    from quotaledger.client import BalanceClient

    with BalanceClient("https://api.example.com", token) as client:
        balance = client.balance()
    print(balance.format_amount(), balance.quota)

One API key's own budget (`GET /api/usage/token`, quotaledger and new-api relays) is the
`newapi-key` provider, given the key instead of the token; its answer is a `KeyBalance`:

    with BalanceClient("https://api.example.com", key, provider="newapi-key") as client:
        key_balance = client.balance()

Errors are one tree under `BalanceError` (see `quotaledger.client.errors`).
"""

from typing import TYPE_CHECKING, Any

from quotaledger.client.balance import Balance
from quotaledger.client.errors import (
    AuthenticationError,
    BalanceError,
    ConfigurationError,
    MistypedTokenError,
    NetworkError,
    PermissionDeniedError,
    ProviderError,
    RateLimitedError,
)
from quotaledger.client.key_balance import KeyBalance
from quotaledger.client.providers import PROVIDERS, Provider
from quotaledger.client.sync_client import BalanceClient

if TYPE_CHECKING:
    from quotaledger.client.async_client import AsyncBalanceClient

__all__ = [
    "PROVIDERS",
    "AsyncBalanceClient",
    "AuthenticationError",
    "Balance",
    "BalanceClient",
    "BalanceError",
    "ConfigurationError",
    "KeyBalance",
    "MistypedTokenError",
    "NetworkError",
    "PermissionDeniedError",
    "Provider",
    "ProviderError",
    "RateLimitedError",
]


def __getattr__(name: str) -> Any:
    # The async client brings aiohttp (~0.1 s to import): `quotaledger balance`, which
    # starts a process per query, never needs it.
    if name == "AsyncBalanceClient":
        from quotaledger.client.async_client import AsyncBalanceClient

        return AsyncBalanceClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
