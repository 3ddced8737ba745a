"""Alert settings (SPEC §7's rules on the server): what each account asks to be told.

An account sets a warning and/or a critical threshold on its balance, and the Apprise URLs
to notify; each limited API key may have thresholds of its own on its remaining budget,
told to the same URLs (a key without a limit spends the account's balance: it has no alert
of its own). Thresholds are integer quota; the page and the API speak USD.

Apprise URLs can hold secrets (webhook tokens, passwords, bot tokens in the host part), so
the list is stored as one Fernet token (`AlertCipher`: a key of its own, derived from
QUOTALEDGER_SECRET_KEY as the channels' is), shown back only as a hint (`url_hint`: the
scheme and the last four characters), and never logged. What each account or key was last
found at and told of is in `alert_states.py`; the crossings are found and sent by
`server/alert_watch.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from quotaledger.errors import InvalidInput, NotFound
from quotaledger.periods import period_start
from quotaledger.relay.channels import ChannelCipher
from quotaledger.store.database import Database, now
from quotaledger.store.tables import alert_settings, alert_states, api_keys, key_alerts, users

MAX_URLS = 10
MAX_URL_LENGTH = 2000


class AlertCipher(ChannelCipher):
    """The alert URLs' cipher: the channels' scheme with its own derived key."""

    hkdf_info = b"quotaledger alert urls v1"
    protects = "alert notification URLs"

    def __repr__(self) -> str:
        return "AlertCipher(<secret>)"


CipherOf = Callable[[], AlertCipher]
"""Makes the cipher when URLs are stored or read (`NotConfigured` without a secret key):
an account without URLs needs none."""


@dataclass(frozen=True)
class Thresholds:
    """Alert levels in quota; None: not set. A balance at or below a level is in it."""

    warn: int | None = None
    critical: int | None = None

    @property
    def empty(self) -> bool:
        return self.warn is None and self.critical is None


def thresholds(warn: int | None, critical: int | None) -> Thresholds:
    """Checked thresholds: not negative, critical not above warning."""
    if any(level is not None and level < 0 for level in (warn, critical)):
        raise InvalidInput("threshold", "cannot be negative")
    if warn is not None and critical is not None and critical > warn:
        raise InvalidInput("critical", "must not be above the warning threshold")
    return Thresholds(warn, critical)


@dataclass(frozen=True)
class KeyAlert:
    """A limited key of the account and its thresholds (empty when none are set)."""

    key_id: int
    name: str
    remain_quota: int
    thresholds: Thresholds


@dataclass(frozen=True)
class AlertSettings:
    thresholds: Thresholds
    url_hints: tuple[str, ...]
    keys: tuple[KeyAlert, ...]  # every limited key of the account, oldest first


def account_subject(user_id: int) -> str:
    """How `alert_states` names an account (and `key_subject` a key)."""
    return f"account:{user_id}"


def key_subject(key_id: int) -> str:
    return f"key:{key_id}"


def url_hint(url: str) -> str:
    """How a stored URL is shown: its scheme and last four characters (`json://…hook`);
    the rest may be a secret, the host part included (`tgram://BOT_TOKEN/CHAT`)."""
    scheme, _, rest = url.strip().partition("://")
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{scheme.lower()}://…{tail}"


# ------------------------------------------------------------------ reading

# A key has an amount of its own to watch when it is limited or has a periodic limit (an
# unlimited key without one spends the account's balance: the account's thresholds apply).
_WATCHABLE = api_keys.c.unlimited.is_(False) | api_keys.c.period_quota.isnot(None)
SPENDABLE_COLUMNS = (
    api_keys.c.remain_quota, api_keys.c.unlimited, api_keys.c.period,
    api_keys.c.period_quota, api_keys.c.period_used, api_keys.c.period_start,
)  # fmt: skip


def spendable(row: Any, at: float | None = None) -> int:
    """What a key may still spend now (SPEC §12's "remaining budget and period"): the least
    of its remaining budget (when limited) and what its period still allows (when it has
    one), from `SPENDABLE_COLUMNS` in that order."""
    remain, unlimited, period, period_quota, period_used, started = row
    at = time.time() if at is None else at
    left = [] if unlimited else [int(remain)]
    if period is not None and period_quota is not None:
        used = int(period_used) if int(started) == period_start(at, period) else 0
        left.append(max(int(period_quota) - used, 0))
    return min(left) if left else 0


def get_settings(database: Database, user_id: int) -> AlertSettings:
    with database.read() as connection:
        row = connection.execute(
            select(alert_settings.c.warn_quota, alert_settings.c.critical_quota,
                   alert_settings.c.url_hints).where(alert_settings.c.user_id == user_id)
        ).first()  # fmt: skip
        keys = connection.execute(
            select(api_keys.c.id, api_keys.c.name, *SPENDABLE_COLUMNS,
                   key_alerts.c.warn_quota, key_alerts.c.critical_quota)
            .select_from(api_keys.outerjoin(key_alerts, key_alerts.c.key_id == api_keys.c.id))
            .where(api_keys.c.user_id == user_id, api_keys.c.deleted_at.is_(None), _WATCHABLE)
            .order_by(api_keys.c.id)
        ).all()  # fmt: skip
    own = Thresholds() if row is None else Thresholds(row.warn_quota, row.critical_quota)
    hints = () if row is None else tuple(json.loads(row.url_hints))
    listed = tuple(
        KeyAlert(k.id, k.name, spendable(k[2:8]), Thresholds(k.warn_quota, k.critical_quota))
        for k in keys
    )
    return AlertSettings(own, hints, listed)


def notification_urls(database: Database, cipher_of: CipherOf, user_id: int) -> list[str]:
    """The account's Apprise URLs, decrypted (for sending only: never shown or logged)."""
    with database.read() as connection:
        return _urls(connection, cipher_of, user_id)


def _urls(connection: Connection, cipher_of: CipherOf, user_id: int) -> list[str]:
    stored = connection.execute(
        select(alert_settings.c.urls_encrypted).where(alert_settings.c.user_id == user_id)
    ).scalar()
    if stored is None:
        return []
    urls: list[str] = json.loads(cipher_of().decrypt(stored, "alerts"))
    return urls


# ------------------------------------------------------------------ writing


def set_thresholds(database: Database, user_id: int, levels: Thresholds) -> None:
    """Set the account's thresholds (both at once; None clears one). Clearing both forgets
    what was announced, so that thresholds set later start from a clean slate."""
    with database.write() as connection:
        _upsert(connection, user_id, warn_quota=levels.warn, critical_quota=levels.critical)
        if levels.empty:
            connection.execute(
                delete(alert_states).where(alert_states.c.subject == account_subject(user_id))
            )


def add_url(database: Database, cipher_of: CipherOf, user_id: int, url: str) -> None:
    """Add an Apprise URL (checked by the caller, who knows Apprise) to the account's list."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput("url", f"must have 1 to {MAX_URL_LENGTH} characters")
    with database.write() as connection:
        _lock(connection, user_id)
        urls = _urls(connection, cipher_of, user_id)
        if url in urls:
            raise InvalidInput("url", "is in the list already")
        if len(urls) >= MAX_URLS:
            raise InvalidInput("url", f"at most {MAX_URLS} URLs: remove one first")
        _store_urls(connection, cipher_of, user_id, [*urls, url])


def remove_url(database: Database, cipher_of: CipherOf, user_id: int, index: int) -> None:
    """Remove the URL at `index` (0-based, as `AlertSettings.url_hints` lists them)."""
    with database.write() as connection:
        _lock(connection, user_id)
        urls = _urls(connection, cipher_of, user_id)
        if not 0 <= index < len(urls):
            raise NotFound(f"no URL number {index + 1}")
        _store_urls(connection, cipher_of, user_id, urls[:index] + urls[index + 1 :])


def set_key_thresholds(database: Database, user_id: int, key_id: int, levels: Thresholds) -> None:
    """Set the thresholds of `user_id`'s limited key `key_id`; empty ones remove them, and
    forget what was announced (as `set_thresholds` does for the account)."""
    with database.write() as connection:
        owned = connection.execute(
            select(api_keys.c.unlimited, api_keys.c.period_quota).where(
                api_keys.c.id == key_id, api_keys.c.user_id == user_id,
                api_keys.c.deleted_at.is_(None),
            )
        ).first()  # fmt: skip
        if owned is None:
            raise NotFound(f"no API key {key_id}")
        connection.execute(delete(key_alerts).where(key_alerts.c.key_id == key_id))
        if levels.empty:
            connection.execute(
                delete(alert_states).where(alert_states.c.subject == key_subject(key_id))
            )
            return
        if owned.unlimited and owned.period_quota is None:
            raise InvalidInput("key", "an unlimited key has no budget of its own to watch: "
                               "set the account's thresholds, or give the key a limit "
                               "or a periodic limit")  # fmt: skip
        connection.execute(key_alerts.insert().values(
            key_id=key_id, user_id=user_id, warn_quota=levels.warn, critical_quota=levels.critical
        ))  # fmt: skip


def _store_urls(connection: Connection, cipher_of: CipherOf, user_id: int, urls: list[str]) -> None:
    encrypted = cipher_of().encrypt(json.dumps(urls)) if urls else None
    hints = json.dumps([url_hint(url) for url in urls])
    _upsert(connection, user_id, urls_encrypted=encrypted, url_hints=hints)


def _lock(connection: Connection, user_id: int) -> None:
    """Create the account's row if missing and lock it: two edits of the list in a row on
    two instances apply one after the other."""
    _upsert(connection, user_id)
    connection.execute(
        select(alert_settings.c.user_id)
        .where(alert_settings.c.user_id == user_id)
        .with_for_update()
    )


def _upsert(connection: Connection, user_id: int, **values: object) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    row = {"user_id": user_id, "updated_at": now(), **values}
    statement = dialect.insert(alert_settings).values(**row)
    changed = {name: statement.excluded[name] for name in row if name != "user_id"}
    connection.execute(statement.on_conflict_do_update(index_elements=["user_id"], set_=changed))


# ------------------------------------------------------------------ what is watched


@dataclass(frozen=True)
class Watched:
    """Every threshold set, for the in-memory copy that each settlement is checked against."""

    accounts: dict[int, Thresholds]  # user_id -> thresholds
    keys: dict[int, tuple[int, Thresholds]]  # key_id -> (user_id, thresholds)
    levels: dict[str, str]  # subject -> its stored level (`alert_states`); absent: OK
    usernames: dict[str, int]  # username -> user_id of the accounts watched
    periodic: frozenset[int] = frozenset()  # the watched keys with a periodic limit


def watched(database: Database) -> Watched:
    """Every account and live limited key with a threshold set."""
    with database.read() as connection:
        accounts = connection.execute(
            select(alert_settings.c.user_id, alert_settings.c.warn_quota,
                   alert_settings.c.critical_quota, users.c.username)
            .select_from(alert_settings.join(users, users.c.id == alert_settings.c.user_id))
            .where(
                alert_settings.c.warn_quota.isnot(None)
                | alert_settings.c.critical_quota.isnot(None)
            )
        ).all()  # fmt: skip
        keys = connection.execute(
            select(key_alerts.c.key_id, key_alerts.c.user_id, key_alerts.c.warn_quota,
                   key_alerts.c.critical_quota)
            .add_columns(api_keys.c.period_quota.isnot(None).label("periodic"))
            .select_from(key_alerts.join(api_keys, and_(
                api_keys.c.id == key_alerts.c.key_id, api_keys.c.deleted_at.is_(None),
                _WATCHABLE,
            )))
        ).all()  # fmt: skip
        levels = connection.execute(select(alert_states.c.subject, alert_states.c.level)).all()
    return Watched(
        {row.user_id: Thresholds(row.warn_quota, row.critical_quota) for row in accounts},
        {row.key_id: (row.user_id, Thresholds(row.warn_quota, row.critical_quota)) for row in keys},
        {row.subject: row.level for row in levels},
        {row.username: row.user_id for row in accounts},
        frozenset(row.key_id for row in keys if row.periodic),
    )


def watched_thresholds_in(
    connection: Connection, kind: str, number: int
) -> tuple[int, Thresholds] | None:
    """(owner's user id, thresholds) of `account` or `key` `number`, or None when it has no
    threshold (or, for a key, is deleted or unlimited now)."""
    if kind == "account":
        row = connection.execute(
            select(alert_settings.c.user_id, alert_settings.c.warn_quota,
                   alert_settings.c.critical_quota).where(alert_settings.c.user_id == number)
        ).first()  # fmt: skip
    else:
        row = connection.execute(
            select(key_alerts.c.user_id, key_alerts.c.warn_quota, key_alerts.c.critical_quota)
            .select_from(key_alerts.join(api_keys, api_keys.c.id == key_alerts.c.key_id))
            .where(key_alerts.c.key_id == number, api_keys.c.deleted_at.is_(None), _WATCHABLE)
        ).first()  # fmt: skip
    if row is None:
        return None
    levels = Thresholds(row[1], row[2])
    return None if levels.empty else (int(row[0]), levels)
