"""A lowered output cap goes in the field the target model takes (SPEC §8b): chat's
`max_completion_tokens` for OpenAI's reasoning models, `max_tokens` elsewhere, the client's
own field when it named one; Anthropic's thinking budget lowered or turned off with it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quotaledger.billing.pricing import make_price
from quotaledger.billing.sizing import SizingRequest, size
from quotaledger.wire import anthropic_messages, openai_chat, openai_responses


@pytest.mark.parametrize(
    ("model", "field"),
    [("gpt-5", "max_completion_tokens"), ("gpt-5.1-codex", "max_completion_tokens"),
     ("o3-mini", "max_completion_tokens"), ("openai/o4-mini", "max_completion_tokens"),
     ("o1", "max_completion_tokens"), ("gpt-4o", "max_tokens"), ("deepseek-chat", "max_tokens"),
     ("o1x-local", "max_tokens")],
)  # fmt: skip
def test_the_chat_cap_goes_in_the_field_the_model_takes(model: str, field: str) -> None:
    body = {"model": model, "messages": []}
    assert openai_chat.with_output_cap(body, 900, model) == {**body, field: 900}


def test_the_clients_own_chat_field_is_kept_and_never_both() -> None:
    body = {"model": "gpt-5", "messages": [], "max_tokens": 32_000}
    assert openai_chat.with_output_cap(body, 900, "gpt-5") == {**body, "max_tokens": 900}
    both = {"model": "m", "messages": [], "max_tokens": 10, "max_completion_tokens": 20}
    capped = openai_chat.with_output_cap(both, 5, "m")
    assert (capped.get("max_tokens"), capped["max_completion_tokens"]) == (None, 5)
    assert openai_chat.client_cap(both) == 20


def test_responses_takes_max_output_tokens() -> None:
    assert openai_responses.with_output_cap({"model": "gpt-5"}, 700)["max_output_tokens"] == 700


def _claude_code(budget: int) -> dict[str, object]:
    return {
        "model": "claude-sonnet-4-5", "max_tokens": 32_000, "messages": [],
        "thinking": {"type": "enabled", "budget_tokens": budget},
    }  # fmt: skip


def test_anthropic_thinking_is_lowered_with_the_cap_as_sizing_decides() -> None:
    body = _claude_code(31_999)
    budget = anthropic_messages.thinking_budget(body)
    sonnet = make_price("claude-sonnet-4-5", input_usd_per_mtok="3", output_usd_per_mtok="15")
    sized = size(
        SizingRequest(
            sonnet, Decimal(1), "anthropic", 2000, 32_000, 64_000, thinking_budget=budget
        ),
        covered=25_000,
    )
    assert sized.cap_sent is not None
    sent = anthropic_messages.with_output_cap(
        body, sized.cap_sent, thinking_budget=sized.thinking_budget, thinking_off=sized.thinking_off
    )
    assert sent["max_tokens"] == 2533
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1266}
    assert 1024 <= sent["thinking"]["budget_tokens"] < sent["max_tokens"]  # type: ignore[index]


def test_anthropic_thinking_goes_off_when_no_valid_budget_fits() -> None:
    sent = anthropic_messages.with_output_cap(_claude_code(8000), 1024, thinking_off=True)
    assert "thinking" not in sent and sent["max_tokens"] == 1024


def test_only_an_enabled_thinking_has_a_budget() -> None:
    assert anthropic_messages.thinking_budget({"thinking": {"type": "disabled"}}) is None
    assert (
        anthropic_messages.thinking_budget({"thinking": {"type": "enabled", "budget_tokens": "x"}})
        is None
    )
    assert anthropic_messages.thinking_budget({}) is None
