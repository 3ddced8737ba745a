"""The out-of-money refusal (SPEC §8b), per client wire format: one answer each client shows
at once, with the relay's honest message, and never retries.

What each client does with an error before any byte (read from their sources):
- **Stainless SDKs** (openai-python/-node, anthropic-sdk-python/-typescript, so Claude Code's
  transport too): `x-should-retry: true|false` decides first; otherwise 408, 409, 429 and
  5xx are retried (2 retries by default; Claude Code sets up to 10). 402 is not retried, and
  `x-should-retry: false` makes sure of it whatever the status.
- **Claude Code** retries 429, 529 and 5xx itself, not 402; it shows
  `API Error: 402 {body}` with Anthropic's `billing_error` message.
- **Codex CLI** (codex-rs `map_api_error`): 400 becomes `InvalidRequest(body)`, not retried,
  the body shown; 429 becomes "usage limit reached" / "retry limit" (Codex's own words, not
  ours); 401 refreshes its login; any other status (402 included) is `UnexpectedStatus`,
  which its turn loop retries 5 times ("Reconnecting... 1/5", the 7 s the issue saw). A
  `response.failed` whose `error.code` is `insufficient_quota` is `QuotaExceeded` (not
  retried, but shown as Codex's fixed "Quota exceeded. Check your plan and billing details.").
  So Codex sees our message at once only on a 400: `/v1/responses` refuses with 400,
  `code: insufficient_quota`, which the OpenAI SDKs raise as `BadRequestError` (not retried)
  with the same message and code.
- **Gemini CLI** (`retryWithBackoff`) retries 429 and 5xx (and turns 429 quota errors into a
  model fallback); other statuses are shown at once with `error.message`. It gets 402 in
  Google's envelope.
- **OpenAI chat / embeddings clients**: 402 `insufficient_quota` (SPEC §8's table: an
  `APIStatusError` no SDK retries) with `x-should-retry: false`; OpenAI's own 429
  `insufficient_quota` would be retried by any client that does not read the header.

The message says what is held (the reservation this request needed, and what the floor was),
what the balance is, and what output cap would fit, so that a user can act on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from quotaledger.money import format_usd

NO_RETRY = ("x-should-retry", "false")
_JSON = ("content-type", "application/json")


@dataclass(frozen=True)
class Shortfall:
    """What the refused request needed against what its funding covers."""

    # The least reservation: the prompt estimate plus the minimum output; 0 when the request
    # was refused before its body was read (an empty balance).
    needed: int
    available: int  # what the funding row named covers now
    funding: str | None = None  # "the account", "this API key", "this API key's daily limit"
    held: int = 0  # quota held by this account's requests still running (their reservations)
    fitting_cap: int | None = None  # the largest output cap the balance covers; None: none
    minimum_output: int | None = None  # QUOTALEDGER_RELAY_MIN_OUTPUT_TOKENS


@dataclass(frozen=True)
class Refusal:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


def message(shortfall: Shortfall) -> str:
    """The honest sentence: what is needed, what is held, what remains, what would fit."""
    where = f" in {shortfall.funding}" if shortfall.funding else ""
    if shortfall.needed <= 0:  # refused before the request was read: the balance is empty
        return (
            f"Insufficient quota: {shortfall.available:,} "
            f"(${format_usd(shortfall.available, places=4)}) remain{where}; "
            "top up before making a request."
        )
    parts = [
        f"Insufficient quota: this request needs at least {shortfall.needed:,} quota "
        f"(${format_usd(shortfall.needed, places=4)}) and {shortfall.available:,} "
        f"(${format_usd(shortfall.available, places=4)}) remain{where}."
    ]
    if shortfall.held:
        parts.append(
            f"{shortfall.held:,} quota is held by requests still running and comes back "
            "as they finish."
        )
    if shortfall.fitting_cap is not None and shortfall.fitting_cap > 0:
        parts.append(
            f"An output cap of {shortfall.fitting_cap:,} tokens would fit"
            + (
                f" (the relay lowers a cap down to {shortfall.minimum_output:,})."
                if shortfall.minimum_output
                else "."
            )
        )
    else:
        parts.append("The prompt alone costs more than remains: shorten it or top up.")
    return " ".join(parts)


def openai_chat(shortfall: Shortfall) -> Refusal:
    """Chat completions and embeddings: 402 `insufficient_quota`, never retried."""
    return Refusal(402, orjson.dumps(_openai_error(message(shortfall))), (_JSON, NO_RETRY))


def openai_responses(shortfall: Shortfall) -> Refusal:
    """Responses (Codex CLI): 400 `insufficient_quota`, the one status Codex shows at once
    with the body (see the module's docstring); the OpenAI SDKs raise BadRequestError."""
    body = _openai_error(message(shortfall))
    return Refusal(400, orjson.dumps(body), (_JSON, NO_RETRY))


def anthropic_messages(shortfall: Shortfall) -> Refusal:
    """Messages (Claude Code): 402 `billing_error` in Anthropic's envelope, never retried."""
    body = {"type": "error", "error": {"type": "billing_error", "message": message(shortfall)}}
    return Refusal(402, orjson.dumps(body), (_JSON, NO_RETRY))


def gemini(shortfall: Shortfall) -> Refusal:
    """Gemini (Gemini CLI, google-genai): 402 in Google's envelope; 402 is not one of the
    statuses Gemini CLI retries (429, 5xx). `FAILED_PRECONDITION` is Google's status for
    an account that cannot be billed."""
    body = {"error": {"code": 402, "message": message(shortfall), "status": "FAILED_PRECONDITION"}}
    return Refusal(402, orjson.dumps(body), (_JSON, NO_RETRY))


def _openai_error(text: str) -> dict[str, Any]:
    return {
        "error": {
            "message": text,
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }


# The refusal of each client format (`wire.formats.Format.name`).
BY_FORMAT = {
    "chat": openai_chat,
    "embeddings": openai_chat,
    "responses": openai_responses,
    "messages": anthropic_messages,
    "gemini": gemini,
    "gemini_embed": gemini,
    "gemini_embeds": gemini,
}


def refusal(format_name: str, shortfall: Shortfall) -> Refusal:
    """The out-of-money refusal for a client of `format_name` (OpenAI's for any other)."""
    return BY_FORMAT.get(format_name, openai_chat)(shortfall)
