"""API keys (SPEC §8): what relay users call models with.

A key is `sk-ql-` + 32 random base62 characters (190 bits) + a 6-character checksum, the
format of the system token (`tokens.py`) under another prefix, so that secret scanners and
clients can tell one from the other and spot a mistyped key offline. Only its SHA-256 and
a 4-character hint are stored; the key is shown once, at creation.

A key spends its owner's balance. It may also carry its own budget (`remain_quota`, or
`unlimited`), an expiry, the models and client networks it may use, a pricing group, and a
periodic limit (per UTC day or month, see `periods.py`). `admit` applies every rule that
can refuse a request before any quota is reserved; the quota rules belong to
`reservations.reserve`. Deleting a key is a soft delete: log rows keep its name.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, func, insert, select, update

from quotaledger import tokens
from quotaledger.errors import AuthenticationFailed, InvalidInput, NotFound, PermissionDenied
from quotaledger.money import MAX_QUOTA
from quotaledger.periods import PERIODS, next_period_start, period_start
from quotaledger.relay.limits import NO_RATES, Rates
from quotaledger.settings import Network
from quotaledger.store.compiled import CompiledStatement
from quotaledger.store.database import Database
from quotaledger.store.tables import api_keys, users
from quotaledger.text import check_text

KEY_PREFIX = "sk-ql-"
MALFORMED_KEY = "malformed API key: expected an sk-ql- key"
Clock = Callable[[], float]


@dataclass(frozen=True)
class ApiKey:
    """A key as every adapter sees it: never the key itself, nor its hash."""

    id: int
    user_id: int
    name: str
    hint: str
    status: str  # enabled | disabled, as set; see `state` for expired/exhausted/deleted
    expires_at: int | None
    deleted_at: int | None
    unlimited: bool
    remain_quota: int
    granted_quota: int
    used_quota: int
    request_count: int
    models: frozenset[str] | None  # None: every offered model
    networks: tuple[Network, ...] | None  # None: any client address
    group: str | None  # None: the owner's group
    period: str | None  # day | month | None
    period_quota: int | None
    period_used: int
    period_start: int
    created_at: int
    last_used_at: int | None
    owner: str  # the owner's username
    # Rate limits (SPEC §12, `relay.rates`); None: none of that kind.
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    def state(self, now: float) -> str:
        """enabled, disabled, deleted, expired or exhausted (the last two derived)."""
        if self.deleted_at is not None:
            return "deleted"
        if self.status != "enabled":
            return "disabled"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if not self.unlimited and self.remain_quota <= 0:
            return "exhausted"
        return "enabled"

    def period_used_now(self, now: float) -> int:
        """Quota used (and reserved) in the current period: 0 once a new one began."""
        if self.period is None or self.period_start != period_start(now, self.period):
            return 0
        return self.period_used

    def period_remaining(self, now: float) -> int | None:
        """What the periodic limit still allows in the current period; None without one."""
        if self.period_quota is None:
            return None
        return max(self.period_quota - self.period_used_now(now), 0)

    def period_resets_at(self, now: float) -> int | None:
        """When the current period ends and its count starts again from zero."""
        return next_period_start(now, self.period) if self.period else None


_KEY_COLUMNS = (
    *(api_keys.c[name] for name in ("id", "user_id", "name", "key_hint", "status")),
    *(api_keys.c[name] for name in ("expires_at", "deleted_at", "unlimited", "remain_quota")),
    *(api_keys.c[name] for name in ("granted_quota", "used_quota", "request_count", "models")),
    *(api_keys.c[name] for name in ("networks", "group", "period", "period_quota")),
    *(api_keys.c[name] for name in ("period_used", "period_start", "created_at")),
    api_keys.c.last_used_at,
    users.c.username,
    *(api_keys.c[name] for name in ("rpm", "tpm", "concurrency")),
)


def _key_from_row(row: Any) -> ApiKey:
    values = list(row[: len(_KEY_COLUMNS)])
    values[7] = bool(values[7])  # SQLite hands booleans back as 0/1
    values[12] = _parse_models(values[12])
    values[13] = _parse_networks(values[13])
    return ApiKey(*values)


@functools.lru_cache(maxsize=4096)
def _parse_models(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(m for m in text.split(",") if m)


@functools.lru_cache(maxsize=4096)
def _parse_networks(text: str | None) -> tuple[Network, ...] | None:
    if text is None:
        return None
    return tuple(ipaddress.ip_network(n, strict=False) for n in text.split(",") if n)


# ------------------------------------------------------------------ creating and managing


@dataclass(frozen=True)
class KeyLimits:
    """What a new key may do; the defaults: unlimited (the owner's balance is the cap),
    never expires, every model, any address, the owner's group, no periodic limit."""

    quota: int | None = None  # None: unlimited
    expires_at: int | None = None
    models: tuple[str, ...] | None = None
    networks: tuple[str, ...] | None = None
    group: str | None = None
    period: str | None = None
    period_quota: int | None = None


def create_key(
    database: Database, user_id: int, name: str, limits: KeyLimits = KeyLimits(), *,
    clock: Clock = time.time,
) -> tuple[ApiKey, str]:  # fmt: skip
    """A new key for `user_id`; returns it and the key itself, which is never seen again."""
    created_at = int(clock())
    values = _validated(name, limits, created_at)
    raw = tokens.generate_token(KEY_PREFIX)
    values["key_hint"] = tokens.token_hint(raw)
    with database.write() as connection:
        owner_group = connection.execute(
            select(users.c.group).where(users.c.id == user_id)
        ).scalar_one_or_none()
        if owner_group is None:
            raise NotFound(f"no user with id {user_id}")
        if limits.group is not None and limits.group not in (owner_group, "default"):
            raise InvalidInput("group", f"must be a group the user has: {owner_group!r}")
        key_id = connection.execute(
            insert(api_keys)
            .values(user_id=user_id, key_hash=tokens.hash_token(raw), **values)
            .returning(api_keys.c.id)
        ).scalar_one()
        return _get_in(connection, key_id), raw


def _validated(name: str, limits: KeyLimits, created_at: int) -> dict[str, Any]:
    if not name.strip() or len(name) > 64:
        raise InvalidInput("name", "must be 1-64 characters")
    check_text("name", name)  # the API checks every string; `key create` comes here
    if limits.quota is not None and not 0 <= limits.quota <= MAX_QUOTA:
        raise InvalidInput("quota", "must be a whole number of quota, 0 or more")
    if limits.expires_at is not None and limits.expires_at <= created_at:
        raise InvalidInput("expires", "must be in the future")
    if (limits.period is None) != (limits.period_quota is None):
        raise InvalidInput("period", "give both a period (day or month) and its quota")
    if limits.period is not None and limits.period not in PERIODS:
        raise InvalidInput("period", "must be day or month")
    if limits.period_quota is not None and not 0 < limits.period_quota <= MAX_QUOTA:
        raise InvalidInput("period_quota", "must be a positive whole number of quota")
    quota = limits.quota or 0
    return {
        "name": name.strip(),
        "expires_at": limits.expires_at,
        "unlimited": limits.quota is None,
        "remain_quota": quota,
        "granted_quota": quota,
        "models": _models_text(limits.models),
        "networks": _networks_text(limits.networks),
        "group": limits.group,
        "period": limits.period,
        "period_quota": limits.period_quota,
        "created_at": created_at,
    }


def _models_text(models: Iterable[str] | None) -> str | None:
    if models is None:
        return None
    cleaned = sorted({m.strip() for m in models if m.strip()})
    if not cleaned or any(len(m) > 128 or "," in m for m in cleaned):
        raise InvalidInput("models", "give model names of 1-128 characters, without commas")
    return ",".join(cleaned)


def _networks_text(networks: Iterable[str] | None) -> str | None:
    if networks is None:
        return None
    parsed = []
    for text in networks:
        try:
            parsed.append(str(ipaddress.ip_network(text.strip(), strict=False)))
        except ValueError:
            raise InvalidInput("networks", f"not an address or CIDR network: {text!r}") from None
    if not parsed:
        raise InvalidInput("networks", "give at least one network, e.g. 10.0.0.0/8")
    return ",".join(parsed)


def _select_keys() -> Any:
    return select(*_KEY_COLUMNS).join_from(api_keys, users, users.c.id == api_keys.c.user_id)


def _get_in(connection: Connection, key_id: int) -> ApiKey:
    row = connection.execute(_select_keys().where(api_keys.c.id == key_id)).first()
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    return _key_from_row(row)


def get_key(database: Database, key_id: int, *, user_id: int | None = None) -> ApiKey:
    """The key `key_id` (deleted ones too); with `user_id`, only if that user owns it."""
    with database.read() as connection:
        key = _get_in(connection, key_id)
    if user_id is not None and key.user_id != user_id:
        raise NotFound(f"no API key with id {key_id}")
    return key


def list_keys(
    database: Database, user_id: int | None = None, *, include_deleted: bool = False
) -> list[ApiKey]:
    """Every key (of `user_id` when given), oldest first; deleted ones only if asked."""
    statement = _select_keys().order_by(api_keys.c.id)
    if user_id is not None:
        statement = statement.where(api_keys.c.user_id == user_id)
    if not include_deleted:
        statement = statement.where(api_keys.c.deleted_at.is_(None))
    with database.read() as connection:
        return [_key_from_row(row) for row in connection.execute(statement)]


def set_key_status(
    database: Database, key_id: int, status: str, *, user_id: int | None = None
) -> ApiKey:
    """Enable or disable a key (not a deleted one); with `user_id`, only that user's."""
    if status not in ("enabled", "disabled"):
        raise InvalidInput("status", "must be enabled or disabled")
    return _change(database, key_id, user_id, {"status": status})


def delete_key(
    database: Database, key_id: int, *, user_id: int | None = None, clock: Clock = time.time
) -> ApiKey:
    """Delete a key: it never admits again; its row stays so log rows keep its name. A
    reservation still open on it settles normally."""
    return _change(database, key_id, user_id, {"deleted_at": int(clock())})


def _change(database: Database, key_id: int, user_id: int | None, values: dict[str, Any]) -> ApiKey:
    condition = (api_keys.c.id == key_id) & api_keys.c.deleted_at.is_(None)
    if user_id is not None:
        condition &= api_keys.c.user_id == user_id
    with database.write() as connection:
        if connection.execute(update(api_keys).where(condition).values(**values)).rowcount != 1:
            raise NotFound(f"no API key with id {key_id}")
        return _get_in(connection, key_id)


def key_page(
    database: Database, user_id: int, page: int, page_size: int, *, name: str | None = None,
    digest: str | None = None,
) -> tuple[list[ApiKey], int]:  # fmt: skip
    """One page of `user_id`'s keys (not deleted), newest first, and their total; only the
    key named `name` (a `%` pattern when it holds one) or whose SHA-256 is `digest`."""
    condition = (api_keys.c.user_id == user_id) & api_keys.c.deleted_at.is_(None)
    if name is not None:
        condition &= api_keys.c.name.like(name) if "%" in name else api_keys.c.name == name
    if digest is not None:
        condition &= api_keys.c.key_hash == digest
    return _page(database, api_keys, condition, page, page_size)


def all_keys_page(
    database: Database, page: int, page_size: int, keyword: str | None = None
) -> tuple[list[ApiKey], int]:
    """One page of every user's keys (not deleted), newest first, for the operator console:
    `keyword` matches a part of the key's name or its owner's username, or a key's hint."""
    condition: ColumnElement[bool] = api_keys.c.deleted_at.is_(None)
    if keyword:
        pattern = f"%{keyword.strip()}%"
        condition &= (
            api_keys.c.name.like(pattern)
            | users.c.username.like(pattern)
            | (api_keys.c.key_hint == keyword.strip())
        )
    joined = api_keys.join(users, users.c.id == api_keys.c.user_id)
    return _page(database, joined, condition, page, page_size)


def _page(
    database: Database, source: Any, condition: Any, page: int, page_size: int
) -> tuple[list[ApiKey], int]:
    """The keys matching `condition` over `source`, newest first: one page, and the total."""
    with database.read() as connection:
        total = connection.execute(
            select(func.count()).select_from(source).where(condition)
        ).scalar_one()
        rows = connection.execute(
            _select_keys()
            .where(condition)
            .order_by(api_keys.c.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
    return [_key_from_row(row) for row in rows], int(total)


# The fields `update_key` may change, by `KeyLimits`' names (and `name`).
UPDATABLE = ("name", "quota", "expires_at", "models", "networks", "group", "period")


def update_key(
    database: Database, key_id: int, user_id: int, changes: dict[str, Any], *,
    clock: Clock = time.time,
) -> ApiKey:  # fmt: skip
    """Change some of a key's settings: `changes` maps names of `UPDATABLE` to new values
    as `create_key` takes them (`quota` None: unlimited; `period` a (period, quota) pair or
    None). A new `quota` is the key's remaining budget from now on: what it already spent
    and holds reserved stays counted (`granted - used - reserved == remain` still holds)."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "cannot be changed")
    with database.write() as connection:
        current = _get_in(connection, key_id)
        if current.user_id != user_id or current.deleted_at is not None:
            raise NotFound(f"no API key with id {key_id}")
        limits = _merged(current, changes)
        # A new expiry must be in the future; a kept one (even past) stays as it is.
        since = int(clock()) if "expires_at" in changes else 0
        values = _validated(changes.get("name", current.name), limits, since)
        owner_group = connection.execute(
            select(users.c.group).where(users.c.id == user_id)
        ).scalar_one()
        if limits.group is not None and limits.group not in (owner_group, "default"):
            raise InvalidInput("group", f"must be a group the user has: {owner_group!r}")
        for kept in ("created_at", "granted_quota", "remain_quota"):
            values.pop(kept)
        if "quota" in changes:
            remain = limits.quota or 0
            values["remain_quota"] = remain
            values["granted_quota"] = api_keys.c.granted_quota + (remain - api_keys.c.remain_quota)
        connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
        return _get_in(connection, key_id)


def _merged(current: ApiKey, changes: dict[str, Any]) -> KeyLimits:
    period = changes.get("period", (current.period, current.period_quota))
    period_name, period_quota = period if period is not None else (None, None)
    models = changes.get("models", sorted(current.models) if current.models else None)
    networks = tuple(str(n) for n in current.networks) if current.networks else None
    return KeyLimits(
        quota=changes.get("quota", None if current.unlimited else current.remain_quota),
        expires_at=changes.get("expires_at", current.expires_at),
        models=tuple(models) if models is not None else None,
        networks=changes.get("networks", networks),
        group=changes.get("group", current.group),
        period=period_name,
        period_quota=period_quota,
    )


def delete_keys(
    database: Database, key_ids: Iterable[int], user_id: int, *, clock: Clock = time.time
) -> int:
    """Delete several of `user_id`'s keys at once; returns how many were deleted."""
    ids = sorted(set(key_ids))
    condition = api_keys.c.id.in_(ids) & (api_keys.c.user_id == user_id)
    with database.write() as connection:
        result = connection.execute(
            update(api_keys)
            .where(condition & api_keys.c.deleted_at.is_(None))
            .values(deleted_at=int(clock()))
        )
        return int(result.rowcount)


# ------------------------------------------------------------------ admission


@dataclass(frozen=True)
class Admission:
    """A key that may make this request, and what the relay needs of its owner."""

    key: ApiKey
    user_quota: int
    user_group: str
    account_rates: Rates = NO_RATES  # the owner's own rate limits (SPEC §12)

    @property
    def group(self) -> str:
        """The pricing group: the key's own, else its owner's."""
        return self.key.group or self.user_group


def key_digest(raw_key: str) -> str:
    """The digest `admit` looks keys up by; `AuthenticationFailed` for a malformed key
    (wrong prefix, length or checksum: refused without a database read)."""
    if not tokens.is_well_formed(raw_key, KEY_PREFIX):
        raise AuthenticationFailed(MALFORMED_KEY)
    return tokens.hash_token(raw_key)


_ADMIT = CompiledStatement(
    _select_keys()
    .add_columns(users.c.status, users.c.quota, users.c.group)
    .add_columns(users.c.rpm, users.c.tpm, users.c.concurrency)
    .where(api_keys.c.key_hash == bindparam("digest"))
)


def admit(
    database: Database,
    digest: str,
    client_address: str,
    model: str | None,
    offered: frozenset[str] | set[str],
    *,
    clock: Clock = time.time,
) -> Admission:
    """Apply SPEC §8's admission rules, in its table's order, to one request by the key
    with SHA-256 `digest` from `client_address` for `model` (None: no model, as for
    `GET /v1/models`), given the models `offered` (priced, with an enabled channel).

    Raises `AuthenticationFailed` (401: unknown, deleted, disabled or expired key),
    `PermissionDenied` (403: address not allowed, owner disabled, model not allowed for
    this key) or `NotFound` (404: model not offered). Quota is not checked here: the
    reservation refuses what the account, the key or its period cannot cover (402).
    """
    row = database.fetch_one(_ADMIT, {"digest": digest})
    return _admission(row, client_address, model, offered, clock())


async def admit_async(
    database: Database,
    digest: str,
    client_address: str,
    model: str | None,
    offered: frozenset[str] | set[str],
    *,
    clock: Clock = time.time,
) -> Admission:
    """`admit` for code on the event loop: one indexed read (`Database.fetch_one_async`)."""
    row = await database.fetch_one_async(_ADMIT, {"digest": digest})
    return _admission(row, client_address, model, offered, clock())


async def lookup_async(database: Database, digest: str) -> Admission:
    """The key with SHA-256 `digest` and its owner's balance, for reading its own balance
    (`GET /api/usage/token`): a disabled, expired or exhausted key may still see it; an
    unknown or deleted one gets `AuthenticationFailed`, a disabled owner `PermissionDenied`."""
    row = await database.fetch_one_async(_ADMIT, {"digest": digest})
    if row is None:
        raise AuthenticationFailed("unknown API key")
    key = _key_from_row(row)
    user_status, user_quota, user_group = row[len(_KEY_COLUMNS) : len(_KEY_COLUMNS) + 3]
    if key.deleted_at is not None:
        raise AuthenticationFailed("this API key is deleted")
    if user_status != "enabled":
        raise PermissionDenied("the account of this API key is disabled")
    return Admission(key, int(user_quota), str(user_group), _account_rates(row))


def _admission(
    row: Any, client_address: str, model: str | None, offered: frozenset[str] | set[str],
    now: float,
) -> Admission:  # fmt: skip
    if row is None:
        raise AuthenticationFailed("unknown API key")
    key = _key_from_row(row)
    user_status, user_quota, user_group = row[len(_KEY_COLUMNS) : len(_KEY_COLUMNS) + 3]
    _check_key(key, now)
    _check_address(key, client_address)
    if user_status != "enabled":
        raise PermissionDenied("the account of this API key is disabled")
    if model is not None:
        if key.models is not None and model not in key.models:
            raise PermissionDenied(f"this API key may not use model {model!r}")
        if model not in offered:
            raise NotFound(f"model {model!r} is not offered")
    return Admission(key, int(user_quota), str(user_group), _account_rates(row))


def _account_rates(row: Any) -> Rates:
    rpm, tpm, concurrency = row[len(_KEY_COLUMNS) + 3 :]
    return Rates(rpm, tpm, concurrency)


def _check_key(key: ApiKey, now: float) -> None:
    state = key.state(now)
    if state in ("deleted", "disabled"):
        raise AuthenticationFailed(f"this API key is {state}")
    if state == "expired":
        raise AuthenticationFailed("this API key has expired")


def _check_address(key: ApiKey, client_address: str) -> None:
    if key.networks is None:
        return
    try:
        address = ipaddress.ip_address(client_address)
    except ValueError:
        raise PermissionDenied("this API key is limited to some networks") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not any(address in network for network in key.networks):
        raise PermissionDenied(f"this API key may not be used from {address}")


def allowed_models(key: ApiKey, offered: Iterable[str]) -> list[str]:
    """The offered models this key may call, sorted (for `GET /v1/models`)."""
    return sorted(m for m in offered if key.models is None or m in key.models)
