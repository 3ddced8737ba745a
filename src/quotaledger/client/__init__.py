"""The balance of a prepaid LLM API account, from quotaledger, any one-api / new-api relay,
OpenRouter, DeepSeek, SiliconFlow or Moonshot, in one typed `Balance`.

    from quotaledger.client import BalanceClient

    with BalanceClient("https://api.example.com", token) as client:
        balance = client.balance()
    print(balance.format_amount(), balance.quota)

Errors are one tree under `BalanceError` (see `quotaledger.client.errors`).
"""

from quotaledger.client.async_client import AsyncBalanceClient
from quotaledger.client.balance import Balance
from quotaledger.client.errors import (
    AuthenticationError,
    BalanceError,
    ConfigurationError,
    NetworkError,
    PermissionDeniedError,
    ProviderError,
    RateLimitedError,
)
from quotaledger.client.providers import PROVIDERS, Provider
from quotaledger.client.sync_client import BalanceClient

__all__ = [
    "PROVIDERS",
    "AsyncBalanceClient",
    "AuthenticationError",
    "Balance",
    "BalanceClient",
    "BalanceError",
    "ConfigurationError",
    "NetworkError",
    "PermissionDeniedError",
    "Provider",
    "ProviderError",
    "RateLimitedError",
]
