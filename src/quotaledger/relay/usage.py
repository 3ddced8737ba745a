"""What one relayed request used, in the token classes that are priced apart (SPEC §8a).

Providers report usage differently; each format's module turns its report into this one shape:
- OpenAI (chat, Responses): the input count *includes* cached tokens, so uncached input is
  input - cached; there are no cache writes.
- Anthropic: `input_tokens` *excludes* cache reads and writes, which come as their own fields,
  cache writes split into 5-minute and 1-hour ones when the answer says so.

Reasoning tokens are billed as output: every provider already counts them inside its output
figure (`completion_tokens`, `output_tokens`), so `output` here includes them and `reasoning`
only says how many of them were reasoning (for the log), never to be added again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class UsageSource(StrEnum):
    UPSTREAM = "upstream"  # the provider's own report
    LOCAL = "local"  # counted by the relay over what it sent and relayed


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input: int = 0  # uncached input
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0  # reasoning included
    reasoning: int = 0  # of which reasoning (informational)
    source: UsageSource = UsageSource.UPSTREAM

    @property
    def prompt_tokens(self) -> int:
        """All input, cached or not: what the log calls prompt tokens."""
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h

    @property
    def completion_tokens(self) -> int:
        return self.output

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output

    def with_output(self, output: int, reasoning: int | None = None) -> TokenUsage:
        return replace(
            self, output=output, reasoning=self.reasoning if reasoning is None else reasoning
        )

    def as_openai_usage(self) -> dict[str, Any]:
        """OpenAI's chat `usage` object (for a usage chunk the relay synthesizes)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }


def count(value: Any) -> int | None:
    """A token count from a provider's JSON: a non-negative int (not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def optional_count(value: Any) -> int | None:
    """Like `count`, but an absent field (None) is 0; a present but invalid one is None."""
    return 0 if value is None else count(value)
