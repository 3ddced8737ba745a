"""Prompt-cache breakpoints of a Messages request (SPEC §8b): the prefixes an upstream may
already hold in its prompt cache, so that a reservation can expect them read at the cache
price instead of reserving the whole prompt at the dearest input rate.

Anthropic caches a prompt's prefix through each block marked `cache_control`, in the order
tools, system, messages. Claude Code marks its system prompt and tools (tens of thousands of
tokens, identical across its sessions) and its latest turns. With the prompt reserved at the
cache-write rate, a $0.05 key could not make one Claude Code call that costs $0.04 at the
prices the upstream will charge; knowing which prefixes are warm, it can.

A breakpoint is the digest of its prefix (the blocks' JSON without their `cache_control`)
and the prefix's share of the request's bytes, from which its share of the prompt estimate
follows. Images and documents weigh what their tokens do (`counting.MEDIA_TOKENS`), not
their base64 bytes. Besides the marked ones, every block position up to `LOOKBACK` blocks
before a mark is a breakpoint too (unmarked): Anthropic looks there for a cached prefix, and
that is where the previous turn's mark was when a conversation moved its marks on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from quotaledger.wire.counting import MEDIA_TOKENS

FIVE_MINUTES, ONE_HOUR = 300, 3600
LOOKBACK = 20  # blocks before a mark where Anthropic looks for a cache hit
_MEDIA = frozenset({"image", "document"})
_MEDIA_BYTES = MEDIA_TOKENS * 4  # ~4 bytes of JSON text per token


@dataclass(frozen=True, slots=True)
class Breakpoint:
    digest: bytes  # of the model and the prefix through the marked block
    prefix_bytes: int  # the prefix's weight ...
    total_bytes: int  # ... out of the whole request's
    ttl: int  # seconds the upstream keeps it: 300, or 3600 for `ttl: "1h"`
    marked: bool = True  # False: a position looked at for a hit, not one written

    def tokens(self, prompt_tokens: int) -> int:
        """The prefix's share of a prompt estimate."""
        return prompt_tokens * self.prefix_bytes // max(1, self.total_bytes)


def messages_breakpoints(body: dict[str, Any]) -> list[Breakpoint]:
    """The breakpoints of an Anthropic Messages body, in prefix order; none when it marks
    nothing (the common case costs one scan for marks)."""
    blocks = list(_blocks(body))
    if not any(mark is not None for _, mark in blocks):
        return []
    looked_at = _looked_at(blocks)
    digest = hashlib.sha256(str(body.get("model", "")).encode())
    found: list[tuple[bytes, int, int, bool]] = []
    weight = 0
    for index, (block, mark) in enumerate(blocks):
        data = orjson.dumps(_unmarked(block), option=orjson.OPT_SORT_KEYS)
        digest.update(len(data).to_bytes(8, "big") + data)
        weight += _MEDIA_BYTES if _is_media(block) else len(data)
        if index in looked_at:
            ttl = _ttl(mark) if mark is not None else FIVE_MINUTES
            found.append((digest.copy().digest(), weight, ttl, mark is not None))
    return [Breakpoint(d, w, weight, ttl, marked) for d, w, ttl, marked in found]


def _looked_at(blocks: list[tuple[Any, dict[str, Any] | None]]) -> set[int]:
    """The block positions that may hold a cached prefix: each mark and the `LOOKBACK`
    blocks before it."""
    marks = [index for index, (_, mark) in enumerate(blocks) if mark is not None]
    return {i for m in marks for i in range(max(0, m - LOOKBACK), m + 1)}


def _blocks(body: dict[str, Any]) -> Any:
    """(block, its cache_control or None) in Anthropic's prefix order."""
    for tool in _list(body.get("tools")):
        yield tool, _mark(tool)
    system = body.get("system")
    if isinstance(system, str):
        yield {"system": system}, None
    for block in _list(system):
        yield block, _mark(block)
    for message in _list(body.get("messages")):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield {"role": message.get("role"), "text": content}, None
            continue
        yield {"role": message.get("role")}, None
        for block in _list(content):
            yield block, _mark(block)


def _mark(block: Any) -> dict[str, Any] | None:
    mark = block.get("cache_control") if isinstance(block, dict) else None
    return mark if isinstance(mark, dict) else None


def _unmarked(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _is_media(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") in _MEDIA


def _ttl(mark: dict[str, Any]) -> int:
    return ONE_HOUR if mark.get("ttl") == "1h" else FIVE_MINUTES


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
