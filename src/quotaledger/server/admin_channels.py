"""new-api's channel routes for admins (SPEC §13): `GET/POST/PUT /api/channel/`,
`GET/DELETE /api/channel/{id}`, `GET /api/channel/test/{id}`, on `relay.channels`.

A channel answers with new-api's fields, then ours (`format`, `api_key_hint`, the model map
as an object). Its key is write-only: `key` is always "" in answers; a `PUT` without a key
keeps the stored one. new-api's `type` is read when `format` is absent (1 OpenAI, 14
Anthropic, 24 Gemini); any format `relay.channels` accepts may be given by name. new-api's
health fields (`test_time`, `response_time`, `balance`) are 0: not measured here yet.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger.errors import InvalidInput
from quotaledger.relay import channels
from quotaledger.relay.channels import Channel
from quotaledger.relay.providers import FORMATS, PROVIDERS
from quotaledger.secret import Secret
from quotaledger.server.admin_common import (
    CHANNEL_WRITE,
    ONE,
    WRITE,
    AdminCaller,
    Keyword,
    Page,
    Size,
    audit,
    database_of,
    page_data,
    services_of,
)
from quotaledger.server.newapi_docs import described
from quotaledger.server.responses import ok

router = APIRouter()
ChannelId = Annotated[int, Path(ge=1, le=2**62)]
# new-api's channel types for the formats that have one; others are named by `format`.
TYPE_BY_FORMAT = {"openai": 1, "openai-chat": 1, "anthropic": 14, "gemini": 24}
FORMAT_BY_TYPE = {1: "openai", 14: "anthropic", 24: "gemini"}
STATUS = {"enabled": 1, "disabled": 2}


def channel_item(channel: Channel) -> dict[str, Any]:
    """A channel as new-api shows one (never its key), then our fields."""
    return {
        "id": channel.id,
        "type": TYPE_BY_FORMAT.get(channel.format, 0),
        "key": "",
        "name": channel.name,
        "base_url": channel.base_url,
        "models": ",".join(channel.models),
        "model_mapping": json.dumps(channel.model_map) if channel.model_map else "",
        "priority": channel.priority,
        "weight": channel.weight,
        "status": STATUS.get(channel.status, 2),
        "created_time": channel.created_at,
        "test_time": 0,
        "response_time": 0,
        "balance": 0,
        "balance_updated_time": 0,
        "used_quota": 0,
        "group": "default",
        "tag": None,
        # ours
        "format": channel.format,
        "api_key_hint": channel.api_key_hint,
        "model_map": channel.model_map,
        "state": channel.status,
    }


class ChannelBody(BaseModel):
    """new-api's channel fields (and our `format`); anything else is ignored."""

    model_config = ConfigDict(extra="ignore")
    id: int | None = Field(None, ge=1, le=2**62)
    type: int | None = None
    format: str | None = Field(None, max_length=32)
    name: str | None = Field(None, max_length=64)
    key: str | None = Field(None, max_length=4096)
    base_url: str | None = Field(None, max_length=512)
    models: str | list[str] | None = None
    model_mapping: str | dict[str, str] | None = None
    priority: int | None = None
    weight: int | None = None
    status: int | None = None

    def wire_format(self) -> str | None:
        if self.format is not None:
            if self.format not in FORMATS:
                raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}")
            return self.format
        if self.type is None:
            return None
        if self.type not in FORMAT_BY_TYPE:
            raise InvalidInput("type", "new-api types 1, 14 and 24 only; or give a format")
        return FORMAT_BY_TYPE[self.type]

    def changes(self) -> dict[str, Any]:
        """`channels.update_channel`'s changes: only the fields sent (an empty key: kept)."""
        sent = self.model_fields_set
        found: dict[str, Any] = {}
        for name in ("name", "base_url", "priority", "weight"):
            if name in sent and getattr(self, name) is not None:
                found[name] = getattr(self, name)
        if (wire := self.wire_format()) is not None:
            found["format"] = wire
        if "models" in sent and self.models is not None:
            found["models"] = _models(self.models)
        if "model_mapping" in sent:
            found["model_map"] = _mapping(self.model_mapping)
        if self.key:
            found["api_key"] = Secret(self.key.strip())
        return found


def _models(models: str | list[str]) -> tuple[str, ...]:
    parts = models.split(",") if isinstance(models, str) else models
    return tuple(part.strip() for part in parts if part.strip())


def _mapping(mapping: str | dict[str, str] | None) -> dict[str, str]:
    """new-api's `model_mapping`: a JSON object as a string ("" or null: none)."""
    if isinstance(mapping, dict):
        return mapping
    if not mapping or not mapping.strip():
        return {}
    try:
        found = json.loads(mapping)
    except ValueError:
        raise InvalidInput("model_mapping", "must be a JSON object of model names") from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise InvalidInput("model_mapping", "must be a JSON object of model names")
    return found


def _cipher(request: Request) -> channels.ChannelCipher:
    return channels.ChannelCipher(services_of(request).settings.secret_key)


def _status(value: int) -> str:
    if value not in (1, 2):
        raise InvalidInput("status", "must be 1 (enabled) or 2 (disabled)")
    return "enabled" if value == 1 else "disabled"


# ------------------------------------------------------------------ reading


@router.get("/api/channel/", **described("Every channel (admin): new-api's fields, keys never"))
@router.get("/api/channel", include_in_schema=False)
async def list_channels(
    request: Request, caller: AdminCaller, p: Page = None, page: Page = None,
    page_size: Size = 20, keyword: Keyword = None,
) -> Response:  # fmt: skip
    found = await run_in_threadpool(channels.list_channels, database_of(request))
    if keyword:
        needle = keyword.lower()
        found = [c for c in found if needle in c.name.lower() or needle in ",".join(c.models)]
    number = p or page or 1
    shown = found[(number - 1) * page_size : number * page_size]
    return ok(page_data([channel_item(c) for c in shown], len(found), number, page_size))


@router.get("/api/channel/{channel_id}", **described("One channel (admin)", ONE))
async def get_channel(request: Request, channel_id: ChannelId, caller: AdminCaller) -> Response:
    found = await run_in_threadpool(channels.get_channel_by_id, database_of(request), channel_id)
    return ok(channel_item(found))


@router.get(
    "/api/channel/test/{channel_id}",
    **described("Send the channel its cheapest request; `time` in seconds", (*ONE, 503)),
)
async def test_channel(
    request: Request, channel_id: ChannelId, caller: AdminCaller,
    model: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:  # fmt: skip
    """new-api's answer: `{success, message, time}` (HTTP 200 either way: the test ran),
    with our `data` (the status, the upstream model, the answer's start)."""
    found = await run_in_threadpool(channels.get_channel_by_id, database_of(request), channel_id)
    result = await run_in_threadpool(
        channels.probe_channel, found, _cipher(request), model or None, 30.0
    )
    await audit(request, caller, "channel.test", found.name, status=result.status)
    message = "" if result.ok else f"HTTP {result.status}: {result.detail}"
    if result.status == 0:
        message = result.detail
    data = {"status": result.status, "upstream_model": result.upstream_model,
            "detail": result.detail, "seconds": round(result.seconds, 3)}  # fmt: skip
    body = {"success": result.ok, "message": message, "time": round(result.seconds, 3),
            "data": data}  # fmt: skip
    return Response(orjson.dumps(body), media_type="application/json")


# ------------------------------------------------------------------ writing


def _body_channel(raw: dict[str, Any]) -> ChannelBody:
    """new-api's newer clients wrap the channel: `{"mode": "single", "channel": {...}}`."""
    inner = raw.get("channel")
    return ChannelBody.model_validate(inner if isinstance(inner, dict) else raw)


@router.post(
    "/api/channel/", **described("Add a channel (admin); its key is kept encrypted", CHANNEL_WRITE)
)
@router.post("/api/channel", include_in_schema=False)
async def add_channel(request: Request, raw: dict[str, Any], caller: AdminCaller) -> Response:
    body = _body_channel(raw)
    wire = body.wire_format() or "openai"
    base_url = body.base_url or PROVIDERS[wire].default_base_url
    if not body.name or not body.key or not base_url:
        missing = "name" if not body.name else "key" if not body.key else "base_url"
        raise InvalidInput(missing, "is required for a new channel")
    spec = channels.ChannelSpec(
        name=body.name, base_url=base_url, models=_models(body.models or ""),
        api_key=Secret(body.key.strip()), model_map=_mapping(body.model_mapping), format=wire,
        priority=body.priority or 0, weight=body.weight or 1,
    )  # fmt: skip
    database = database_of(request)
    added = await run_in_threadpool(channels.add_channel, database, _cipher(request), spec)
    if body.status == 2:
        await run_in_threadpool(channels.set_channel_status, database, added.name, "disabled")
        added = await run_in_threadpool(channels.get_channel_by_id, database, added.id)
    await audit(
        request,
        caller,
        "channel.add",
        added.name,
        format=added.format,
        base_url=added.base_url,
        models=list(added.models),
        key=added.api_key_hint,
    )
    return ok(channel_item(added))


@router.put(
    "/api/channel/", **described("Change a channel (admin); no key: the key is kept", CHANNEL_WRITE)
)
@router.put("/api/channel", include_in_schema=False)
async def update_channel(request: Request, raw: dict[str, Any], caller: AdminCaller) -> Response:
    body = _body_channel(raw)
    if body.id is None:
        raise InvalidInput("id", "name the channel to change")
    database = database_of(request)
    current = await run_in_threadpool(channels.get_channel_by_id, database, body.id)
    changes = body.changes()
    cipher = _cipher(request) if "api_key" in changes else None
    changed = current
    if changes:
        changed = await run_in_threadpool(
            channels.update_channel, database, cipher, current.name, changes
        )
    if body.status is not None:
        await run_in_threadpool(
            channels.set_channel_status, database, changed.name, _status(body.status)
        )
        changed = await run_in_threadpool(channels.get_channel_by_id, database, body.id)
    shown = {k: (v if k != "api_key" else "new key") for k, v in changes.items()}
    if body.status is not None:
        shown["status"] = changed.status
    await audit(request, caller, "channel.edit", current.name, **shown)
    return ok(channel_item(changed))


@router.delete("/api/channel/{channel_id}", **described("Delete a channel (admin)", WRITE))
async def delete_channel(request: Request, channel_id: ChannelId, caller: AdminCaller) -> Response:
    database = database_of(request)
    found = await run_in_threadpool(channels.get_channel_by_id, database, channel_id)
    await run_in_threadpool(channels.delete_channel, database, found.name)
    await audit(request, caller, "channel.delete", found.name)
    return ok()
