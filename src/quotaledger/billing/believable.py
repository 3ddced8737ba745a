"""Believable usage (SPEC §8b): what the relay charges when an upstream's report of usage
is missing, malformed or more than it could have been, and the note the log row keeps.

An upstream's report is checked against what the relay knows for itself, in this order:
- no report, or one with a count that is not a non-negative integer (`usage_missing`,
  `usage_invalid`): the usage counted locally (the prompt estimate, the text delivered);
- output above the cap the upstream worked under x `n` (`output_above_cap`): output
  counted locally over what was delivered, never above that cap x `n`. The cap is the one
  the relay sent, else the client's, else the model's maximum output;
- no output for an answer that delivered text (`output_zero`): counted locally, the same;
- a prompt under half the local estimate (`prompt_below_estimate`): the estimate (cache
  classes kept as reported, the rest as uncached input);
- a prompt above `PROMPT_CEILING_FACTOR` x the estimate + `PROMPT_CEILING_SLACK`
  (`prompt_above_estimate`): lowered to that ceiling, dearest classes first. Images and
  files are estimated at a fixed size, so the ceiling is generous: it only stops reports
  no request could have earned (`prompt_tokens: 10**9` for a three-word question);
- more web searches than the stream showed being made (`web_search_above_seen`): those seen.
A report that passes is charged as it came (note None). Output counted locally is also
never above the cap x `n`: the upstream could not have produced more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from quotaledger.token_usage import TokenUsage, UsageSource

PROMPT_CEILING_FACTOR = 8
PROMPT_CEILING_SLACK = 65_536


@dataclass(frozen=True)
class Bounds:
    """What a request's usage cannot exceed, as the relay knows it."""

    output_cap: int  # output tokens per choice the upstream worked under
    choices: int = 1  # `n`
    prompt_estimate: int = 0  # the local estimate, without the reservation's margin
    web_searches_seen: int | None = None  # server tool calls seen; None: not visible

    @property
    def most_output(self) -> int:
        return max(0, self.output_cap) * max(1, self.choices)

    @property
    def prompt_ceiling(self) -> int:
        return PROMPT_CEILING_FACTOR * max(0, self.prompt_estimate) + PROMPT_CEILING_SLACK


class Judged(NamedTuple):
    usage: TokenUsage  # what to charge
    note: str | None  # why it is not the report (comma-separated reasons), None if it is


def judge(
    reported: TokenUsage | None,
    bounds: Bounds,
    local: Callable[[], TokenUsage],
    *,
    delivered: bool,
) -> Judged:
    """The usage to charge for `reported` under `bounds` (the module's rule). `local`
    counts what was delivered (called only when the report is not believed: counting may
    be costly); `delivered`: whether any text reached the client."""
    if reported is None or not _valid(reported):
        note = "usage_missing" if reported is None else "usage_invalid"
        return Judged(_clamped_output(local(), bounds), note)
    notes: list[str] = []
    usage = reported
    if usage.output > bounds.most_output or (usage.output == 0 and delivered):
        notes.append("output_above_cap" if usage.output > bounds.most_output else "output_zero")
        counted = _clamped_output(local(), bounds)
        usage = dataclasses.replace(
            usage, output=counted.output, reasoning=counted.reasoning, source=UsageSource.LOCAL
        )
    usage = _prompt_judged(usage, bounds, notes)
    seen = bounds.web_searches_seen
    if seen is not None and usage.web_search > seen:
        notes.append("web_search_above_seen")
        usage = dataclasses.replace(usage, web_search=max(0, seen))
    return Judged(usage, ",".join(notes) or None)


def _prompt_judged(usage: TokenUsage, bounds: Bounds, notes: list[str]) -> TokenUsage:
    estimate, prompt = max(0, bounds.prompt_estimate), usage.prompt_tokens
    if 2 * prompt < estimate:
        notes.append("prompt_below_estimate")
        cached = usage.cache_read + usage.cache_write_5m + usage.cache_write_1h
        return dataclasses.replace(usage, input=estimate - cached, source=UsageSource.LOCAL)
    if prompt > bounds.prompt_ceiling:
        notes.append("prompt_above_estimate")
        return _prompt_lowered(usage, prompt - bounds.prompt_ceiling)
    return usage


def _prompt_lowered(usage: TokenUsage, excess: int) -> TokenUsage:
    """`usage` with `excess` prompt tokens taken away, from the dearest class first."""
    classes = {}
    for name in ("cache_write_1h", "cache_write_5m", "input", "cache_read"):
        value = getattr(usage, name)
        taken = min(value, excess)
        classes[name], excess = value - taken, excess - taken
    return dataclasses.replace(usage, **classes, source=UsageSource.LOCAL)


def _clamped_output(usage: TokenUsage, bounds: Bounds) -> TokenUsage:
    most = bounds.most_output
    if usage.output <= most:
        return usage
    return dataclasses.replace(usage, output=most, reasoning=min(usage.reasoning, most))


_COUNTS = (
    "input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning",
    "web_search",
)  # fmt: skip


def _valid(usage: TokenUsage) -> bool:
    for name in _COUNTS:
        value = getattr(usage, name)
        if type(value) is not int or value < 0:
            return False
    return usage.reasoning <= usage.output
