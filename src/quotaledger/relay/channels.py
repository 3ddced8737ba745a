"""Channels (SPEC §8, §8a): the upstreams the relay forwards to, and the choice among them.

A channel has a name, a base URL, a wire format (`openai` or `anthropic`), the models it
serves (each possibly renamed upstream: `--map gpt-4o=gpt-4o-2024-08-06`), a priority, a
weight and a status. Its upstream API key is stored encrypted (`ChannelCipher`: Fernet,
keyed from QUOTALEDGER_SECRET_KEY) and shown only as a hint; it is in no `repr`, log line
or error message.

The base URL is what the client's path after `/v1` is appended to: give an upstream's
OpenAI-SDK base URL (`https://api.openai.com/v1`, `https://host/api/paas/v4`); a URL with
no path at all gets `/v1` (`https://api.anthropic.com` becomes
`https://api.anthropic.com/v1`, so `/v1/messages` goes to `.../v1/messages`).

`choose_channels` orders the candidates for one request: higher priority first, weighted
random within a priority. Which of them are healthy enough to be tried is `relay.health`'s
to say (shared by every instance), not this module's.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from quotaledger.errors import AlreadyExists, InvalidInput, NotConfigured, NotFound
from quotaledger.relay.providers import FORMATS, provider
from quotaledger.settings import Secret
from quotaledger.store.database import Database, now
from quotaledger.store.tables import channels, prices

log = logging.getLogger("quotaledger.relay.channels")

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MIN_SECRET_LENGTH = 32
_HKDF_INFO = b"quotaledger channel keys v1"


# ------------------------------------------------------------------ the key at rest


class ChannelCipher:
    """Encrypts and decrypts upstream keys with a Fernet key (AES-128-CBC + HMAC-SHA256)
    derived by HKDF-SHA256 from QUOTALEDGER_SECRET_KEY: any secret of 32 characters or
    more works, and the same secret always gives the same key. A subclass with another
    `hkdf_info` gets a key of its own from the same secret (`alerts.AlertCipher`)."""

    hkdf_info = _HKDF_INFO
    protects = "upstream keys"  # for the message when the secret is missing

    def __init__(self, secret: Secret | None) -> None:
        from cryptography.fernet import Fernet  # imported when channels are used
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        if secret is None or not secret.reveal():
            raise NotConfigured(
                f"QUOTALEDGER_SECRET_KEY is not set: {self.protects} are stored encrypted with it. "
                "Set it to a random string of 32 characters or more, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))', and keep it."
            )
        if len(secret.reveal()) < MIN_SECRET_LENGTH:
            raise NotConfigured(
                f"QUOTALEDGER_SECRET_KEY is too short: use {MIN_SECRET_LENGTH} characters or more"
            )
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=self.hkdf_info).derive(
            secret.reveal().encode("utf-8")
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def __repr__(self) -> str:
        return "ChannelCipher(<secret>)"

    def encrypt(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, channel_name: str = "?") -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise NotConfigured(
                f"the key of channel {channel_name!r} cannot be decrypted with "
                "QUOTALEDGER_SECRET_KEY: was the secret key changed? Add the channel again."
            ) from None


# ------------------------------------------------------------------ the model


@dataclass(frozen=True)
class Channel:
    id: int
    name: str
    base_url: str
    format: str  # a channel format: `relay.providers.FORMATS`
    models: tuple[str, ...]
    model_map: dict[str, str] = field(hash=False)
    priority: int
    weight: int
    status: str
    api_key_hint: str
    created_at: int
    api_key_encrypted: str = field(repr=False)

    def serves(self, model: str) -> bool:
        return model in self.models

    def upstream_model(self, model: str) -> str:
        """The name upstream knows `model` by."""
        return self.model_map.get(model, model)

    def api_key(self, cipher: ChannelCipher) -> str:
        """The upstream key, in clear: only for the request that sends it."""
        return cipher.decrypt(self.api_key_encrypted, self.name)


_COLUMNS = (
    channels.c.id, channels.c.name, channels.c.base_url, channels.c.format, channels.c.models,
    channels.c.model_map, channels.c.priority, channels.c.weight, channels.c.status,
    channels.c.api_key_hint, channels.c.created_at, channels.c.api_key_encrypted,
)  # fmt: skip


def _from_row(row: Any) -> Channel:
    values = list(row)
    values[4] = tuple(m for m in values[4].split(",") if m)
    values[5] = json.loads(values[5])
    return Channel(*values)


# ------------------------------------------------------------------ managing


@dataclass(frozen=True)
class ChannelSpec:
    """What `add_channel` needs; validated there."""

    name: str
    base_url: str
    models: tuple[str, ...]
    api_key: Secret
    model_map: dict[str, str] = field(default_factory=dict)
    format: str = "openai"
    priority: int = 0
    weight: int = 1


def add_channel(database: Database, cipher: ChannelCipher, spec: ChannelSpec) -> Channel:
    """Store a new channel, its key encrypted. `AlreadyExists` for a taken name."""
    values = _validated(spec)
    key = spec.api_key.reveal()
    values["api_key_encrypted"] = cipher.encrypt(key)
    values["api_key_hint"] = "…" + key[-4:] if len(key) >= 12 else "…"
    try:
        with database.write() as connection:
            channel_id = connection.execute(
                insert(channels).values(created_at=now(), **values).returning(channels.c.id)
            ).scalar_one()
            row = connection.execute(select(*_COLUMNS).where(channels.c.id == channel_id)).one()
    except IntegrityError:
        raise AlreadyExists(f"a channel named {spec.name!r} already exists") from None
    log.info("channel %s added (%s, %s)", spec.name, values["format"], values["base_url"])
    return _from_row(row)


def _validated(spec: ChannelSpec) -> dict[str, Any]:
    if not NAME_PATTERN.fullmatch(spec.name):
        raise InvalidInput(
            "name", "1-64 letters, digits, '_', '.', '-', starting with one of the first two"
        )
    models = _models(spec.models)
    unknown = sorted(set(spec.model_map) - set(models))
    if unknown:
        raise InvalidInput("map", f"maps models the channel does not serve: {', '.join(unknown)}")
    if any(not v or len(v) > 128 for v in spec.model_map.values()):
        raise InvalidInput("map", "upstream model names must be 1-128 characters")
    if spec.format not in FORMATS:
        raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}")
    if not -1_000_000 <= spec.priority <= 1_000_000:
        raise InvalidInput("priority", "must be between -1000000 and 1000000")
    if not 1 <= spec.weight <= 1_000_000:
        raise InvalidInput("weight", "must be between 1 and 1000000")
    key = spec.api_key.reveal()
    if not key or len(key) > 4096 or any(c.isspace() for c in key):
        raise InvalidInput("api_key", "must be 1-4096 characters without spaces or newlines")
    return {
        "name": spec.name, "base_url": normalise_base_url(spec.base_url, spec.format),
        "format": spec.format, "models": ",".join(models),
        "model_map": json.dumps(spec.model_map, sort_keys=True),
        "priority": spec.priority, "weight": spec.weight,
    }  # fmt: skip


def _models(models: Iterable[str]) -> list[str]:
    cleaned = list(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not cleaned or any(len(m) > 128 or "," in m for m in cleaned):
        raise InvalidInput("models", "give 1-128 character model names, without commas")
    return cleaned


def normalise_base_url(url: str, channel_format: str = "openai") -> str:
    """An http(s) URL without credentials, query or fragment; no trailing slash; the
    format's default path (`/v1`, Gemini's `/v1beta`) when it has no path at all."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("base_url", "must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput("base_url", "must not carry credentials, a query or a fragment")
    path = parts.path.rstrip("/") or provider(channel_format).default_path
    return f"{parts.scheme}://{parts.netloc}{path}"


def list_channels(database: Database) -> list[Channel]:
    """Every channel: by priority (highest first), then name."""
    with database.read() as connection:
        rows = connection.execute(
            select(*_COLUMNS).order_by(channels.c.priority.desc(), channels.c.name)
        ).all()
    return [_from_row(row) for row in rows]


def get_channel(database: Database, name: str) -> Channel:
    with database.read() as connection:
        row = connection.execute(select(*_COLUMNS).where(channels.c.name == name)).first()
    if row is None:
        raise NotFound(f"no channel named {name!r}")
    return _from_row(row)


def set_channel_status(database: Database, name: str, status: str) -> None:
    if status not in ("enabled", "disabled"):
        raise InvalidInput("status", "must be enabled or disabled")
    with database.write() as connection:
        changed = connection.execute(
            update(channels).where(channels.c.name == name).values(status=status)
        ).rowcount
    if changed != 1:
        raise NotFound(f"no channel named {name!r}")
    log.info("channel %s %s", name, status)


def delete_channel(database: Database, name: str) -> None:
    """Delete a channel (log rows keep its name as text)."""
    with database.write() as connection:
        if connection.execute(delete(channels).where(channels.c.name == name)).rowcount != 1:
            raise NotFound(f"no channel named {name!r}")
    log.info("channel %s deleted", name)


def get_channel_by_id(database: Database, channel_id: int) -> Channel:
    with database.read() as connection:
        row = connection.execute(select(*_COLUMNS).where(channels.c.id == channel_id)).first()
    if row is None:
        raise NotFound(f"no channel with id {channel_id}")
    return _from_row(row)


# The fields `update_channel` may change, by `ChannelSpec`'s names.
EDITABLE = ("name", "base_url", "models", "model_map", "api_key", "format", "priority", "weight")


def update_channel(
    database: Database, cipher: ChannelCipher | None, name: str, changes: dict[str, Any]
) -> Channel:
    """Change some of channel `name`'s settings (`EDITABLE`, as `ChannelSpec` takes them),
    validated as `add_channel` validates a new one. A new `api_key` (a `Secret`) needs the
    cipher; without one the stored key stays. A base URL is normalised for the (new) format."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "cannot be changed")
    current = get_channel(database, name)
    new_key = changes.get("api_key")
    spec = ChannelSpec(
        name=changes.get("name", current.name),
        base_url=changes.get("base_url", current.base_url),
        models=tuple(changes.get("models", current.models)),
        # A kept key is not re-validated: any well-formed stand-in passes the key's rules.
        api_key=new_key or Secret("kept"),
        model_map=changes.get("model_map", current.model_map),
        format=changes.get("format", current.format),
        priority=changes.get("priority", current.priority),
        weight=changes.get("weight", current.weight),
    )
    values = _validated(spec)
    if new_key is not None:
        if cipher is None:
            raise NotConfigured("a new channel key needs QUOTALEDGER_SECRET_KEY")
        key = new_key.reveal()
        values["api_key_encrypted"] = cipher.encrypt(key)
        values["api_key_hint"] = "…" + key[-4:] if len(key) >= 12 else "…"
    try:
        with database.write() as connection:
            connection.execute(update(channels).where(channels.c.id == current.id).values(**values))
            row = connection.execute(select(*_COLUMNS).where(channels.c.id == current.id)).one()
    except IntegrityError:
        raise AlreadyExists(f"a channel named {spec.name!r} already exists") from None
    log.info("channel %s updated (%s)", spec.name, ", ".join(sorted(changes)))
    return _from_row(row)


@dataclass(frozen=True)
class ProbeResult:
    """One test request's outcome: the HTTP status (0 when unreachable), how long it took
    and a short reason (the answer's start, with the key masked out)."""

    status: int
    seconds: float
    detail: str
    upstream_model: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def probe_channel(
    channel: Channel, cipher: ChannelCipher, model: str | None = None, timeout: float = 30.0
) -> ProbeResult:
    """Send the channel's provider's cheapest call (at most 1 output token) for `model`
    (default: the channel's first) and time it. What `channel test` and the console's Test
    button run."""
    import httpx

    api_key = channel.api_key(cipher)
    model = model or channel.models[0]
    if not channel.serves(model):
        raise InvalidInput("model", f"channel {channel.name!r} does not serve {model!r}")
    upstream = provider(channel.format)
    model_name = channel.upstream_model(model)
    url = upstream.url(channel.base_url, upstream.probe.operation, model_name)
    headers = dict([*upstream.headers({}), *upstream.auth(api_key)])
    started = time.perf_counter()
    try:
        response = httpx.post(url, json=upstream.probe.body(model_name), headers=headers,
                              timeout=timeout)  # fmt: skip
    except httpx.HTTPError as exc:
        reason = (str(exc) or type(exc).__name__).replace(api_key, "…")
        return ProbeResult(0, time.perf_counter() - started, f"{url} unreachable: {reason}",
                           model_name)  # fmt: skip
    elapsed = time.perf_counter() - started
    detail = response.text[:300].replace(api_key, "…").replace("\n", " ")
    return ProbeResult(response.status_code, elapsed, detail, model_name)


def offered_models(database: Database) -> frozenset[str]:
    """The models the relay offers: priced, and served by an enabled channel (SPEC §8)."""
    with database.read() as connection:
        priced = set(connection.execute(select(prices.c.model)).scalars())
        served = connection.execute(
            select(channels.c.models).where(channels.c.status == "enabled")
        ).scalars()
        return frozenset(m for text in served for m in text.split(",") if m in priced)


# ------------------------------------------------------------------ choosing


def choose_channels(
    model: str,
    candidates: Iterable[Channel],
    *,
    rng: random.Random | None = None,
    preferred: Callable[[Channel], bool] | None = None,
) -> list[Channel]:
    """The enabled channels serving `model`, in the order to try them: priority descending;
    within a priority the `preferred` ones first (those that serve the request natively),
    weighted random among equals (a channel of weight 3 comes first three times as often as
    one of weight 1)."""
    return in_order(channel_tiers(model, candidates, preferred=preferred), rng)


def channel_tiers(
    model: str, candidates: Iterable[Channel], *, preferred: Callable[[Channel], bool] | None = None
) -> list[list[Channel]]:
    """`choose_channels`' fixed part: the enabled channels serving `model` grouped into
    tiers of equals, in the order the tiers are tried. It depends only on the channels, so
    a snapshot of them computes it once per model (`relay.offers.Offers`)."""
    serving = [c for c in candidates if c.status == "enabled" and c.serves(model)]
    rank = preferred or (lambda _c: True)
    serving.sort(key=lambda c: (-c.priority, not rank(c)))
    return [list(tier) for _, tier in groupby(serving, key=lambda c: (c.priority, rank(c)))]


def in_order(tiers: Iterable[list[Channel]], rng: random.Random | None = None) -> list[Channel]:
    """`choose_channels`' random part: the tiers in turn, each weighted-shuffled."""
    rng = rng or _RNG
    ordered: list[Channel] = []
    for tier in tiers:
        ordered += tier if len(tier) == 1 else _weighted_shuffle(tier, rng)
    return ordered


# One generator per process: `random.Random()` seeds itself from os.urandom (~2.5 KB of
# state), which cost a stream start more than the rest of the channel choice.
_RNG = random.Random()  # noqa: S311 - load balancing, not cryptography


def _weighted_shuffle(tier: list[Channel], rng: random.Random) -> list[Channel]:
    # Efraimidis-Spirakis: sort by u ** (1 / weight), descending; one pass, exact weights.
    return sorted(tier, key=lambda c: rng.random() ** (1.0 / c.weight), reverse=True)
