"""Gemini's thought signatures, carried where the other side keeps them (see `gemini`).

A signature is bytes, written in JSON as base64: Google writes the standard alphabet, the
google-genai Python SDK writes back the URL-safe one (it decodes to bytes and re-encodes), so
a signature is compared and restored by its bytes, never by its text.

- On a `gemini` channel, the signature of a function call travels in the tool-call id the
  client gets, `{id}_ts_{base64url}` (base64url without padding keeps the id within
  `[A-Za-z0-9_-]`, what Anthropic accepts as an id), and is restored from it.
- For a Gemini client, the answer's reasoning parts (text, Anthropic signature, redacted
  data) are packed into one thoughtSignature value: base64 of a marker and their JSON.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from quotaledger.wire import ir

# Google's documented placeholder for a function call that Gemini did not sign (a history
# from another model); Gemini CLI sends the first, Google's docs name both.
SYNTHETIC_SIGNATURE = "skip_thought_signature_validator"
PLACEHOLDER_SIGNATURES = frozenset({SYNTHETIC_SIGNATURE, "context_engineering_is_the_way_to_go"})
_IN_ID = "_ts_"
_PACK = b"quotaledger.reasoning.1\n"


def decode_base64(text: str) -> bytes | None:
    """Bytes of base64 text in either alphabet, padded or not; None when it is not base64."""
    normal = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(normal + "=" * (-len(normal) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def standard_base64(text: str) -> str | None:
    """`text` (base64 in either alphabet) in the standard one, padded; None if not base64."""
    raw = decode_base64(text)
    return None if raw is None else base64.b64encode(raw).decode()


def call_id_with(call_id: str, signature: str) -> str:
    """The client's tool-call id carrying Gemini's signature for the call."""
    raw = decode_base64(signature)
    if raw is None:
        return call_id
    return call_id + _IN_ID + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """(the call's own id, the signature it carries, in Google's alphabet, or None)."""
    head, mark, tail = call_id.partition(_IN_ID)
    if not mark:
        return call_id, None
    signature = standard_base64(tail)
    return (head, signature) if signature else (call_id, None)


def pack_reasoning(parts: list[ir.Reasoning]) -> str:
    entries = [[p.text, p.signature, p.redacted] for p in parts]
    return base64.b64encode(_PACK + orjson.dumps(entries)).decode()


def unpack_reasoning(signature: str) -> list[ir.Reasoning] | None:
    """The reasoning parts a `pack_reasoning` value holds; None for any other signature."""
    raw = decode_base64(signature)
    if raw is None or not raw.startswith(_PACK):
        return None
    try:
        entries = orjson.loads(raw[len(_PACK) :])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entries, list):
        return None
    return [
        ir.Reasoning(str(e[0] or ""), _text_or_none(e[1]), _text_or_none(e[2]))
        for e in entries
        if isinstance(e, list) and len(e) == 3
    ]


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
