"""Conversions between wire formats, keyed by (client format, channel format): what the
relay pipeline asks of one. (The registry is filled by the codecs in `wire/codecs/`.)"""

from __future__ import annotations

from typing import Any, Protocol

from quotaledger.wire.formats import Tracker
from quotaledger.wire.ir import Answer, Conversation


class Conversion(Protocol):
    def request(
        self, body: Any, *, model: str, output_cap: int | None = None
    ) -> tuple[dict[str, Any], Conversation]: ...

    def answer(self, upstream: Any) -> tuple[bytes, Answer]: ...

    def stream(self, *, prompt_tokens: int, sse: bool = True) -> Tracker: ...

    def error(self, status: int, upstream_body: bytes) -> bytes: ...


def conversion(client: str, channel: str) -> Conversion | None:
    """The conversion of `client`'s requests for a `channel` channel; None when native."""
    return None
