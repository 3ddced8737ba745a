"""Gemini's usageMetadata, both ways (SPEC §11.1): `promptTokenCount` includes
`cachedContentTokenCount`; `candidatesTokenCount` excludes `thoughtsTokenCount`, and both are
output (thoughts are billed as output)."""

from __future__ import annotations

from typing import Any

from quotaledger.token_usage import TokenUsage
from quotaledger.wire.counts import count, optional_count


def parse_usage(metadata: Any) -> TokenUsage | None:
    """Gemini's usageMetadata: the prompt count includes cached tokens; output is the
    candidates' count plus the thoughts' (billed as output); tool-use prompt tokens (a
    search's results) are input."""
    if not isinstance(metadata, dict):
        return None
    prompt = count(metadata.get("promptTokenCount"))
    cached = optional_count(metadata.get("cachedContentTokenCount"))
    candidates = optional_count(metadata.get("candidatesTokenCount"))
    thoughts = optional_count(metadata.get("thoughtsTokenCount"))
    tool_prompt = optional_count(metadata.get("toolUsePromptTokenCount"))
    if prompt is None or cached is None or candidates is None or thoughts is None:
        return None
    if tool_prompt is None or cached > prompt:
        return None
    return TokenUsage(
        input=prompt - cached + tool_prompt,
        cache_read=cached,
        output=candidates + thoughts,
        reasoning=thoughts,
    )


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
