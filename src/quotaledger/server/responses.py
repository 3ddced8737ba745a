"""The JSON envelope of every `/api/...` response: `{"success", "message", "data"}`,
encoded once with orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response


class EnvelopeResponse(Response):
    media_type = "application/json"

    def __init__(
        self,
        data: Any = None,
        *,
        message: str | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        body = envelope(data, message=message, status_code=status_code)
        super().__init__(body, status_code, headers=headers, background=background)


def envelope(data: Any = None, *, message: str | None = None, status_code: int = 200) -> bytes:
    """The envelope's JSON bytes."""
    return orjson.dumps({"success": status_code < 400, "message": message, "data": data})


def ok(data: Any = None, *, headers: Mapping[str, str] | None = None) -> EnvelopeResponse:
    return EnvelopeResponse(data, headers=headers)


def envelope_refusal(status_code: int, message: str) -> bytes:
    """A refusal in the envelope (how the front door writes them under `/api`)."""
    return envelope(message=message, status_code=status_code)


def envelope_schema(data_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI schema of an envelope whose `data` has `data_schema`."""
    return {
        "type": "object",
        "required": ["success", "message", "data"],
        "properties": {
            "success": {"type": "boolean"},
            "message": {"type": ["string", "null"]},
            "data": data_schema or {},
        },
    }
