"""Gemini's usageMetadata, both ways (SPEC §11.1): `promptTokenCount` includes
`cachedContentTokenCount`; `candidatesTokenCount` excludes `thoughtsTokenCount`, and both are
output (thoughts are billed as output)."""

from __future__ import annotations

from typing import Any

from quotaledger.token_usage import TokenUsage
from quotaledger.wire.gemini import parse_usage

__all__ = ["parse_usage", "usage_metadata"]


def usage_metadata(usage: TokenUsage) -> dict[str, Any]:
    """TokenUsage as Gemini's usageMetadata: the prompt count includes cached tokens, the
    candidates' excludes thoughts."""
    metadata: dict[str, Any] = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": max(0, usage.output - usage.reasoning),
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cache_read:
        metadata["cachedContentTokenCount"] = usage.cache_read
    if usage.reasoning:
        metadata["thoughtsTokenCount"] = usage.reasoning
    return metadata
