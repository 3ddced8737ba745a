"""What well-known models publish that pricing needs when the operator set nothing
(SPEC §8b): their largest output per answer and their cached-input price as a share of the
input price; and, where published, their largest input (what Gemini's model list calls
`inputTokenLimit`, SPEC §11.1).

A model's maximum output is the cap the relay reserves for when a client sends none
(`max_output_tokens`): a per-model setting (`price set M --max-output-tokens N`), else the
figure below, else `FALLBACK_MAX_OUTPUT_TOKENS`. The cached-input ratio is what a cache
read costs on an OpenAI-format channel when its price sets no cache-read price
(`pricing.token_rates`): the provider's own discount, else `DEFAULT_CACHED_INPUT_RATIO`.

Names match by prefix, longest first, case-insensitively, after any router prefix such as
`openai/` or `anthropic/` (`claude-sonnet-4-5-20250929` is `claude-sonnet-4-5`). The figures
are the providers' published ones as of the end of 2025; a setting always wins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

# A model nobody described: about what current chat models allow, and what the relay then
# reserves for an uncapped request (lowered, and sent, when the balance covers less).
FALLBACK_MAX_OUTPUT_TOKENS = 32_768
# A cache read on an OpenAI-format channel for a model not listed here: OpenAI's own first
# and smallest prompt-caching discount (50 %); every listed provider gives at least that.
DEFAULT_CACHED_INPUT_RATIO = Fraction(1, 2)


@dataclass(frozen=True)
class KnownModel:
    max_output_tokens: int
    cached_input_ratio: Fraction  # a cache read's price / the input price
    input_tokens: int | None = None  # the largest prompt, where published


_TENTH, _QUARTER, _HALF = Fraction(1, 10), Fraction(1, 4), Fraction(1, 2)
_CLAUDE_INPUT = 200_000  # the standard context window (1M is a beta of some models)
_GEMINI_INPUT = 1_048_576

KNOWN_MODELS: dict[str, KnownModel] = {
    # Anthropic (cache reads 0.1x the input price)
    "claude-opus-4-6": KnownModel(128_000, _TENTH, _CLAUDE_INPUT),
    "claude-opus-4-5": KnownModel(64_000, _TENTH, _CLAUDE_INPUT),
    "claude-opus-4-1": KnownModel(32_000, _TENTH, _CLAUDE_INPUT),
    "claude-opus-4": KnownModel(32_000, _TENTH, _CLAUDE_INPUT),
    "claude-sonnet-4": KnownModel(64_000, _TENTH, _CLAUDE_INPUT),  # 4, 4.5
    "claude-haiku-4": KnownModel(64_000, _TENTH, _CLAUDE_INPUT),  # 4.5
    "claude-3-7-sonnet": KnownModel(64_000, _TENTH, _CLAUDE_INPUT),
    "claude-3-5-haiku": KnownModel(8_192, _TENTH, _CLAUDE_INPUT),
    # OpenAI
    "gpt-4o": KnownModel(16_384, _HALF, 128_000),  # and gpt-4o-mini
    "gpt-4.1": KnownModel(32_768, _QUARTER, 1_047_576),  # and mini, nano
    "gpt-5": KnownModel(128_000, _TENTH),  # 5, 5.1, 5.2, mini, nano, codex
    "o1": KnownModel(100_000, _HALF),
    "o1-mini": KnownModel(65_536, _HALF),
    "o3": KnownModel(100_000, _QUARTER),
    "o3-mini": KnownModel(100_000, _HALF),
    "o4-mini": KnownModel(100_000, _QUARTER),
    # Google (implicit caching: 0.25x on 2.5, 0.1x on 3)
    "gemini-2.5": KnownModel(65_536, _QUARTER, _GEMINI_INPUT),
    "gemini-3": KnownModel(65_536, _TENTH, _GEMINI_INPUT),
    # DeepSeek (cache hits 0.1x)
    "deepseek-chat": KnownModel(8_192, _TENTH),
    "deepseek-reasoner": KnownModel(64_000, _TENTH),
    # Alibaba Qwen (implicit cache hits 0.2x)
    "qwen3-max": KnownModel(65_536, Fraction(1, 5)),
    "qwen3-coder": KnownModel(65_536, Fraction(1, 5)),
    "qwen-max": KnownModel(8_192, Fraction(1, 5)),
    "qwen-plus": KnownModel(32_768, Fraction(1, 5)),
    "qwen-flash": KnownModel(32_768, Fraction(1, 5)),
    # Moonshot Kimi (cache hits $0.15 of $0.60)
    "kimi-k2": KnownModel(32_768, _QUARTER),
    # Zhipu GLM (cached input $0.11 of $0.60)
    "glm-4.5": KnownModel(98_304, Fraction(11, 60)),
    "glm-4.6": KnownModel(131_072, Fraction(11, 60)),
}
_LONGEST_FIRST = sorted(KNOWN_MODELS, key=len, reverse=True)


@functools.lru_cache(maxsize=1024)
def known_model(model: str) -> KnownModel | None:
    """The published figures of `model`, by its longest known prefix; None if unknown."""
    name = model.rsplit("/", 1)[-1].lower()
    for prefix in _LONGEST_FIRST:
        if name.startswith(prefix) and _whole_word(name, len(prefix)):
            return KNOWN_MODELS[prefix]
    return None


def _whole_word(name: str, end: int) -> bool:
    # `o1` must not match `o10-whatever`, nor `gpt-4o` match `gpt-4o1`: the prefix ends at a
    # separator or the end of the name (`gpt-4.1-mini`, `gemini-2.5-pro`, `claude-opus-4-5`).
    return end == len(name) or not name[end].isalnum()


def input_token_limit(model: str) -> int | None:
    """The largest prompt `model` takes, where its provider publishes one."""
    found = known_model(model)
    return None if found is None else found.input_tokens


def cached_input_ratio(model: str) -> Fraction:
    """What a cache read of `model` costs as a share of its input price."""
    found = known_model(model)
    return DEFAULT_CACHED_INPUT_RATIO if found is None else found.cached_input_ratio
