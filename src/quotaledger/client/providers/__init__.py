"""The balance APIs the client speaks, by name. Adding one: a module here, a line below."""

from __future__ import annotations

from quotaledger.client.errors import ConfigurationError
from quotaledger.client.providers.base import Provider
from quotaledger.client.providers.deepseek import DeepSeek
from quotaledger.client.providers.moonshot import Moonshot
from quotaledger.client.providers.newapi import NewAPI
from quotaledger.client.providers.newapi_key import NewAPIKey
from quotaledger.client.providers.openrouter import OpenRouter
from quotaledger.client.providers.siliconflow import SiliconFlow

PROVIDERS: dict[str, type[Provider]] = {
    provider.name: provider
    for provider in (NewAPI, OpenRouter, DeepSeek, SiliconFlow, Moonshot, NewAPIKey)
}
"""Provider name -> class; the client makes one instance per client."""


def provider_named(name: str) -> Provider:
    try:
        return PROVIDERS[name.strip().lower()]()
    except KeyError:
        known = ", ".join(PROVIDERS)
        raise ConfigurationError(f"unknown provider {name!r}; known: {known}") from None


__all__ = ["PROVIDERS", "Provider", "provider_named"]
