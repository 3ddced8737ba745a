"""Gemini's model list on the wire (SPEC §11.1): `GET models` and `GET models/{model}`,
each model as Google describes one (`name: "models/{id}"`, `supportedGenerationMethods`,
token limits where known), pages by `pageSize` and `pageToken`."""

from __future__ import annotations

from typing import Any

import orjson

GENERATE_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
EMBED_METHODS = ("embedContent", "batchEmbedContents", "countTokens")


def model_entry(
    name: str, *, output_limit: int, input_limit: int | None, embedding: bool = False
) -> dict[str, Any]:
    """One model of `GET models` as Google lists it (`name: "models/{id}"`)."""
    entry: dict[str, Any] = {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "quotaledger",
        "displayName": name,
        "description": f"{name}, relayed by quotaledger",
    }
    if input_limit is not None:
        entry["inputTokenLimit"] = input_limit
    if not embedding:
        entry["outputTokenLimit"] = output_limit
    entry["supportedGenerationMethods"] = list(EMBED_METHODS if embedding else GENERATE_METHODS)
    return entry


def model_page(
    entries: list[dict[str, Any]], page_size: int | None, page_token: str | None
) -> bytes:
    """`{"models": [...], "nextPageToken"}`: `page_size` entries from the token's offset
    (the token is the offset, as text; every entry at once without a size)."""
    start = int(page_token) if page_token and page_token.isdecimal() else 0
    size = page_size if page_size and page_size > 0 else len(entries)
    page: dict[str, Any] = {"models": entries[start : start + size]}
    if start + size < len(entries):
        page["nextPageToken"] = str(start + size)
    return orjson.dumps(page)
