"""`anthropic`: Anthropic's Messages API (and servers that speak it)."""

from fractions import Fraction

from quotaledger.relay.providers.base import (
    COUNT_TOKENS,
    MESSAGES,
    MODELS,
    Headers,
    Probe,
    Provider,
)

VERSION = "2023-06-01"  # sent when the client named none
# Anthropic's published cache prices as ratios of the input price: read, 5-minute write,
# 1-hour write.
CACHE_RATIOS = (Fraction(1, 10), Fraction(5, 4), Fraction(2))


def _auth(api_key: str) -> Headers:
    return (("x-api-key", api_key),)


def _probe(model: str) -> dict[str, object]:
    return {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}


PROVIDER = Provider(
    name="anthropic",
    native=frozenset({MESSAGES, COUNT_TOKENS}),
    paths={MESSAGES: "/messages", COUNT_TOKENS: "/messages/count_tokens", MODELS: "/models"},
    default_path="/v1",
    auth=_auth,
    probe=Probe(MESSAGES, _probe),
    forwarded_headers=frozenset({"anthropic-version", "anthropic-beta"}),
    default_headers=(("anthropic-version", VERSION),),
    cache_ratios=CACHE_RATIOS,
    converted_operation=MESSAGES,
)
