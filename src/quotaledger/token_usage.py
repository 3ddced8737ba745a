"""What one relayed request used, in the token classes that are priced apart (SPEC §8a).

Providers report usage differently; each wire format's module (`relay/`) turns its report
into this one shape, which `pricing` charges, `reservations` records as progress and
`settlement` writes to the log:
- OpenAI (chat, Responses): the input count *includes* cached tokens, so uncached input is
  input - cached; there are no cache writes.
- Anthropic: `input_tokens` *excludes* cache reads and writes, which come as their own fields,
  cache writes split into 5-minute and 1-hour ones when the answer says so.

Reasoning tokens are billed as output: every provider already counts them inside its output
figure (`completion_tokens`, `output_tokens`), so `output` here includes them and `reasoning`
only says how many of them were reasoning (for the log), never to be added again.
Web searches are counted apart: they are priced per call, not per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    # Server-side tool calls the provider bills per call (SPEC §8b): Anthropic's
    # `server_tool_use.web_search_requests`, the `web_search_call` items of a response.
    web_search: int = 0

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

    def classes(self) -> tuple[int, int, int, int, int]:
        """The five priced counts, in the order of `pricing.TokenRates`."""
        return (self.input, self.cache_read, self.cache_write_5m, self.cache_write_1h, self.output)
