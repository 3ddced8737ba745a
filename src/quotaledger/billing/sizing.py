"""Sizing a relayed request's reservation (SPEC §8b): how much to reserve, the least that
may be reserved, and the output cap to send upstream, if any.

The rule, per request:
- The cap in effect (per choice) is the client's cap, never more than the model's maximum
  output (`pricing.max_output_tokens`); with no cap from the client, the model's maximum.
- Reserve the prompt estimate (with its margin) plus that cap x `n`, in full when the
  balance covers it: nothing is then sent upstream, the client's request goes as it came.
- When the balance covers less, the cap is lowered to what it covers (`covered`, the most
  `reservations.reserve` could take) and the lowered cap is sent upstream (and announced
  to the client, `X-Quotaledger-Output-Cap`).
- The floor: the prompt plus `QUOTALEDGER_RELAY_MIN_OUTPUT_TOKENS` (default 1024) per
  choice, or the cap in effect when that is smaller. Refused (402) only below the floor.
- A thinking budget (Anthropic's `thinking.budget_tokens`, Gemini's `thinkingBudget`) is
  lowered with the cap and kept valid for Anthropic, whose API wants `1024 <= budget <
  max_tokens`: at most half the lowered cap (the answer keeps the other half), at least
  1024, below the cap. When the lowered cap is 1024 or less no valid budget exists and
  thinking is turned off. A budget the client chose below all that stays as it was.
- A per-call price reserves the call's price: there is no cap to size.
- A prompt prefix the upstream holds cached (`warm_prompt_tokens`) is reserved at the
  cache-read rate, the rest of the prompt at the dearest input rate (it may be written).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from quotaledger.billing import pricing
from quotaledger.billing.pricing import Price

MIN_THINKING_BUDGET = 1024  # Anthropic's smallest `budget_tokens`
DEFAULT_MIN_OUTPUT_TOKENS = 1024  # QUOTALEDGER_RELAY_MIN_OUTPUT_TOKENS


@dataclass(frozen=True)
class SizingRequest:
    """What the reservation's size depends on."""

    price: Price
    ratio: Decimal  # the group's
    price_format: str  # the likeliest channel's (cache price defaults)
    prompt_tokens: int  # the local estimate, margin included
    client_cap: int | None  # output tokens per choice the client asked for; None: no cap
    model_max: int  # `pricing.max_output_tokens(price, model)`
    choices: int = 1  # `n`
    min_output: int = DEFAULT_MIN_OUTPUT_TOKENS  # QUOTALEDGER_RELAY_MIN_OUTPUT_TOKENS
    thinking_budget: int | None = None  # the client's, when it set one
    # Of `prompt_tokens`, those expected read from the upstream's prompt cache (a prefix
    # seen cached lately, `relay.warm_prefixes`): reserved at the cache-read rate.
    warm_prompt_tokens: int = 0

    @property
    def cap_in_effect(self) -> int:
        """Output tokens per choice the full reservation is for."""
        cap = self.model_max if self.client_cap is None else min(self.client_cap, self.model_max)
        return max(1, cap)

    @property
    def least_output(self) -> int:
        """Output tokens per choice below which the request is refused."""
        return max(1, min(self.min_output, self.cap_in_effect))


@dataclass(frozen=True)
class Sizing:
    amount: int  # what to reserve (never more than `covered`, when it fits)
    floor: int  # the least reservation: `reservations.reserve(..., minimum=floor)`
    output_cap: int  # output tokens per choice reserved for
    cap_sent: int | None  # the cap to send upstream (lowered), else None: send none
    thinking_budget: int | None = None  # the lowered budget to send, else None: unchanged
    thinking_off: bool = False  # thinking must be turned off (no valid budget is left)
    fits: bool = True  # False: `covered` is below the floor (the request is refused)

    @property
    def lowered(self) -> bool:
        return self.cap_sent is not None


def size(ask: SizingRequest, covered: int | None = None) -> Sizing:
    """The reservation for `ask` when at most `covered` quota can be reserved (None: no
    limit, which gives the amount and floor to ask `reservations.reserve` for)."""
    price, n = ask.price, max(1, ask.choices)
    cap = ask.cap_in_effect
    full = _cost(ask, cap * n)
    floor = _cost(ask, ask.least_output * n)
    if price.per_call_usd is not None or covered is None or full <= covered:
        return Sizing(full, floor, cap, None, fits=covered is None or covered >= floor)
    if covered < floor:
        return Sizing(floor, floor, ask.least_output, None, fits=False)
    affordable = pricing.affordable_output_tokens(
        price, ask.prompt_tokens, covered, ask.ratio, ask.price_format, ask.warm_prompt_tokens
    )
    if affordable is None:  # output is free: the prompt alone was what did not fit
        return Sizing(full, floor, cap, None, fits=covered >= full)
    lowered = max(ask.least_output, min(cap, affordable // n))
    budget, off = lowered_thinking(ask.thinking_budget, lowered)
    return Sizing(_cost(ask, lowered * n), floor, lowered, lowered, budget, off)


def upstream_cap(ask: SizingRequest, sized: Sizing) -> int:
    """The output cap per choice the upstream works under: the one sent, else the client's,
    else the model's maximum (`believable.Bounds.output_cap`)."""
    if sized.cap_sent is not None:
        return sized.cap_sent
    return ask.client_cap if ask.client_cap is not None else ask.model_max


def lowered_thinking(budget: int | None, cap: int) -> tuple[int | None, bool]:
    """(the budget to send, whether thinking goes off) for a client's thinking `budget`
    under a lowered `cap` (the module's rule). (None, False): leave it as it is."""
    if budget is None or budget <= 0:  # none, or Gemini's 0 (off) / -1 (dynamic)
        return None, False
    if cap <= MIN_THINKING_BUDGET:
        return None, True
    kept = min(budget, max(MIN_THINKING_BUDGET, cap // 2))
    return (None if kept == budget else kept), False


def _cost(ask: SizingRequest, output_tokens: int) -> int:
    return pricing.reservation_cost(
        ask.price, ask.prompt_tokens, output_tokens, ask.ratio, ask.price_format,
        ask.warm_prompt_tokens,
    )  # fmt: skip
