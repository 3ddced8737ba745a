"""One object per channel format (SPEC §11): `openai`, `openai-chat`, `anthropic`, `gemini`.

Everything that differs between the upstreams of two formats is in its `Provider`
(`base.py`); the relay, `channel test`, pricing and the offers ask it rather than check a
format's name. Adding a channel format is one module here and one line in `PROVIDERS`
(`docs/adding-a-provider.md`).
"""

from __future__ import annotations

from quotaledger.errors import InvalidInput
from quotaledger.relay.providers import anthropic, gemini, openai, openai_chat
from quotaledger.relay.providers.base import Provider

PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (openai.PROVIDER, openai_chat.PROVIDER, anthropic.PROVIDER, gemini.PROVIDER)
}
FORMATS = tuple(PROVIDERS)


def provider(name: str) -> Provider:
    """The provider of channel format `name`; `InvalidInput` naming the formats if unknown."""
    found = PROVIDERS.get(name)
    if found is None:
        raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}")
    return found
