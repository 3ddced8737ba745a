"""`gemini`: Google's Gemini API (generateContent, streamGenerateContent, countTokens,
embedContent, batchEmbedContents), the key sent as `x-goog-api-key` (never in the URL)."""

from fractions import Fraction

from quotaledger.relay.providers.base import (
    GEMINI,
    GEMINI_BATCH_EMBED,
    GEMINI_COUNT,
    GEMINI_EMBED,
    MODELS,
    Headers,
    Probe,
    Provider,
)

# Context caching is billed at a quarter of the input price (Gemini 2.5's published rate);
# Gemini has no cache writes of the Anthropic kind.
CACHE_RATIOS = (Fraction(1, 4), Fraction(1), Fraction(1))


def _auth(api_key: str) -> Headers:
    return (("x-goog-api-key", api_key),)


def _probe(_model: str) -> dict[str, object]:
    return {
        "contents": [{"role": "user", "parts": [{"text": "ping"}]}],
        "generationConfig": {"maxOutputTokens": 1},
    }


PROVIDER = Provider(
    name="gemini",
    native=frozenset({GEMINI, GEMINI_COUNT, GEMINI_EMBED, GEMINI_BATCH_EMBED}),
    paths={
        GEMINI: "/models/{model}:generateContent",
        GEMINI_COUNT: "/models/{model}:countTokens",
        GEMINI_EMBED: "/models/{model}:embedContent",
        GEMINI_BATCH_EMBED: "/models/{model}:batchEmbedContents",
        MODELS: "/models",
    },
    default_path="/v1beta",
    auth=_auth,
    probe=Probe(GEMINI, _probe),
    cache_ratios=CACHE_RATIOS,
    converted_operation=GEMINI,
    default_base_url="https://generativelanguage.googleapis.com/v1beta",
    stream_paths={GEMINI: "/models/{model}:streamGenerateContent?alt=sse"},
)
