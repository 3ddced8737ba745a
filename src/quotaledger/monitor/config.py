"""The watcher's config file (SPEC §7): `[defaults]` and one `[[account]]` per balance.

Every problem is refused at start with file, line, key and reason; unknown keys too, so a
typo never silently disables an alert. The token never sits in the file: `token_env` names
an environment variable, `token_file` a file holding it (see `tokens.py`).

An account may watch one API key instead (`key_env`/`key_file`: its own budget, read from
`GET /api/usage/token` of quotaledger and new-api relays), with the account's token next to
it or not: an unlimited key spends the account's balance, which only the token can read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from quotaledger.monitor import convert
from quotaledger.monitor.tomlsource import ConfigError, Section, TomlSource

UrlCheck = Callable[[str], "str | None"]
"""Returns why an Apprise URL is unusable, or None."""

# Keys of [defaults] that an [[account]] may override: default value and parser.
INHERITED: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "interval": ("5m", convert.interval),
    "timeout": ("10s", convert.timeout),
    "repeat": ("6h", convert.optional_duration),
    "notify": ([], convert.url_list),
    "retries": (2, convert.non_negative_int),
    "unknown_after": (3, convert.positive_int),
    "recovery_margin": ("10%", convert.fraction),
}
# Keys of [defaults] that apply to the whole watcher.
GLOBAL: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "concurrency": (4, convert.positive_int),
    "jitter": ("10%", convert.fraction),
    "digest": (True, convert.boolean),
    "keep_history": ("forever", convert.retention),
}
ACCOUNT: dict[str, Callable[[Any], Any]] = {
    "name": convert.name,
    "provider": convert.provider,
    "base_url": convert.base_url,
    "token_env": convert.env_name,
    "token_file": convert.path,
    "key_env": convert.env_name,
    "key_file": convert.path,
    "user_id": convert.user_id,
}
KEY_PROVIDERS = ("newapi",)
"""Providers whose sites answer `GET /api/usage/token` (read through `newapi-key`)."""
ACCOUNT_SECTION = Section("account")
THRESHOLD_KEYS = ("warn_usd", "critical_usd", "currency", "warn", "critical")


@dataclass(frozen=True)
class Thresholds:
    """Alert levels in `currency` (the balance's own currency); `None` means not set."""

    currency: str = "USD"
    warn: Decimal | None = None
    critical: Decimal | None = None


@dataclass(frozen=True)
class Policy:
    """How alerts behave: reminders, UNKNOWN after n failures, hysteresis on recovery."""

    repeat: timedelta | None = timedelta(hours=6)
    unknown_after: int = 3
    recovery_margin: Decimal = Decimal("0.10")


@dataclass(frozen=True)
class AccountConfig:
    name: str
    provider: str = "newapi"
    base_url: str | None = None
    token_env: str | None = None
    token_file: Path | None = None
    key_env: str | None = None
    key_file: Path | None = None
    user_id: str | int | None = None
    thresholds: Thresholds = Thresholds()
    policy: Policy = Policy()
    interval: timedelta = timedelta(minutes=5)
    timeout: timedelta = timedelta(seconds=10)
    retries: int = 2
    notify: tuple[str, ...] = ()
    section: Section = ACCOUNT_SECTION

    @property
    def watches_key(self) -> bool:
        return self.key_env is not None or self.key_file is not None

    @property
    def has_token(self) -> bool:
        return self.token_env is not None or self.token_file is not None


@dataclass(frozen=True)
class WatchConfig:
    source: TomlSource
    accounts: tuple[AccountConfig, ...]
    concurrency: int = 4
    jitter: Decimal = Decimal("0.10")
    digest: bool = True
    keep_history: timedelta | None = None  # None: every poll is kept

    @property
    def path(self) -> Path:
        return self.source.path

    def account(self, name: str) -> AccountConfig:
        """The account called `name`; `KeyError` with the known names otherwise."""
        for account in self.accounts:
            if account.name == name:
                return account
        known = ", ".join(a.name for a in self.accounts)
        raise KeyError(f"no account named {name!r} in {self.path} (known: {known})")


class _Table:
    """Reads one TOML table key by key; whatever is left over is an unknown key."""

    def __init__(self, source: TomlSource, section: Section, data: Any) -> None:
        if not isinstance(data, dict):
            raise source.error(section, None, "expected a table")
        self.source, self.section, self.left = source, section, dict(data)

    def take(self, key: str, parse: Callable[[Any], Any], default: Any = None) -> Any:
        if key not in self.left:
            return default
        try:
            return parse(self.left.pop(key))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def fail(self, key: str | None, reason: str, hint: str = "") -> ConfigError:
        return self.source.error(self.section, key, reason, hint)

    def finish(self, known: tuple[str, ...]) -> None:
        for key in self.left:
            raise self.fail(key, convert.unknown_key_reason(key, known))


def load_config(path: Path, *, check_url: UrlCheck | None = None) -> WatchConfig:
    """Parse and validate the config file at `path`; `ConfigError` names file:line and why."""
    source = TomlSource.read(path)
    if check_url is not None:
        check_url = _once_per_url(check_url)
    top = _Table(source, Section("", label="top level"), source.data)
    defaults = _Table(
        source, Section("defaults", label="[defaults]"), top.take("defaults", convert.table, {})
    )
    accounts = top.take("account", convert.array_of_tables, [])
    top.finish(("defaults", "account"))
    # Raw values: each account parses its own or the inherited one, so errors name its line.
    inherited = {key: defaults.left.get(key, default) for key, (default, _) in INHERITED.items()}
    notify_written = "notify" in defaults.left
    for key, (_, parse) in INHERITED.items():
        _take_inherited(defaults, key, parse, check_url)
    settings = {
        key: defaults.take(key, parse, parse(default)) for key, (default, parse) in GLOBAL.items()
    }
    defaults.finish(tuple(INHERITED) + tuple(GLOBAL))
    if not accounts:
        raise top.fail(None, "no [[account]] tables: nothing to watch")
    parsed = tuple(
        _account(source, i, data, inherited, check_url, notify_written)
        for i, data in enumerate(accounts)
    )
    _check_unique_names(source, parsed)
    return WatchConfig(source, parsed, **settings)


def _once_per_url(check_url: UrlCheck) -> UrlCheck:
    """`check_url`, asked once per distinct URL: every account inherits the same
    `[defaults] notify`, and Apprise takes about half a millisecond to check one."""
    reasons: dict[str, str | None] = {}

    def check(url: str) -> str | None:
        if url not in reasons:
            reasons[url] = check_url(url)
        return reasons[url]

    return check


def _take_inherited(
    table: _Table, key: str, parse: Callable[[Any], Any], check_url: UrlCheck | None
) -> Any:
    value = table.take(key, parse)
    if key == "notify" and value and check_url is not None:
        for url in value:
            reason = check_url(url)
            if reason:
                raise table.fail(key, reason, hint=url)
    return value


def _account(
    source: TomlSource,
    index: int,
    data: Any,
    inherited: dict[str, Any],
    check_url: UrlCheck | None,
    notify_written: bool,
) -> AccountConfig:
    name = data.get("name") if isinstance(data, dict) else None
    label = f"[[account]] #{index + 1}" + (f" ({name})" if isinstance(name, str) else "")
    table = _Table(source, Section("account", index, label), data)
    if "name" not in table.left:
        raise table.fail(None, "missing required key 'name'")
    notify_written = notify_written or "notify" in table.left
    for key, raw in inherited.items():
        table.left.setdefault(key, raw)
    values = {
        key: _take_inherited(table, key, parse, check_url) for key, (_, parse) in INHERITED.items()
    }
    fields = {key: table.take(key, parse) for key, parse in ACCOUNT.items()}
    for key in ("token_file", "key_file"):
        if fields[key] is not None and not fields[key].is_absolute():
            # Relative to the config file, not to wherever cron or systemd starts the watcher.
            fields[key] = source.path.parent / fields[key]
    account = AccountConfig(
        **{key: value for key, value in fields.items() if value is not None},
        thresholds=_thresholds(table),
        policy=Policy(values["repeat"], values["unknown_after"], values["recovery_margin"]),
        interval=values["interval"],
        timeout=values["timeout"],
        retries=values["retries"],
        notify=tuple(values["notify"]),
        section=table.section,
    )
    table.finish(tuple(ACCOUNT) + THRESHOLD_KEYS + tuple(INHERITED))
    _check_credentials(table, account)
    if account.timeout >= account.interval:
        raise table.fail("timeout", "must be shorter than interval")
    if not account.notify and not notify_written:
        # An alert that goes nowhere must not pass for a delivered one.
        raise table.fail(
            None,
            f"no notify URLs for account {account.name!r}: add notify = [...] to it or to "
            "[defaults] (or write notify = [] to keep history and metrics without alerts)",
        )
    return account


def _check_credentials(table: _Table, account: AccountConfig) -> None:
    """A token, a key, or both; each from one place; a key only where the site has keys."""
    if account.token_env is not None and account.token_file is not None:
        raise table.fail("token_env", "set one of token_env or token_file, not both")
    if account.key_env is not None and account.key_file is not None:
        raise table.fail("key_env", "set one of key_env or key_file, not both")
    if not account.has_token and not account.watches_key:
        raise table.fail(
            None,
            "no credential: set token_env or token_file (the account's system token), "
            "or key_env or key_file (to watch one API key's own balance)",
        )
    if account.provider == "newapi-key":
        raise table.fail(
            "provider",
            'to watch a key, write key_env = "..." (or key_file) with provider "newapi"',
        )
    if account.watches_key and account.provider not in KEY_PROVIDERS:
        raise table.fail(
            "key_env" if account.key_env is not None else "key_file",
            f"provider {account.provider!r} has no per-key balance (key_env/key_file read "
            "GET /api/usage/token of quotaledger and new-api relays)",
        )


def _thresholds(table: _Table) -> Thresholds:
    usd = [key for key in ("warn_usd", "critical_usd") if key in table.left]
    other = [key for key in ("currency", "warn", "critical") if key in table.left]
    if usd and other:
        reason = "use either warn_usd/critical_usd or currency with warn/critical, not both"
        raise table.fail(other[0], reason)
    if other and "currency" not in table.left:
        raise table.fail(other[0], 'warn/critical need currency = "..." (or use warn_usd)')
    warn_key, critical_key = ("warn", "critical") if other else ("warn_usd", "critical_usd")
    currency = table.take("currency", convert.currency, "USD")
    warn = table.take(warn_key, convert.amount)
    critical = table.take(critical_key, convert.amount)
    if warn is not None and critical is not None and critical >= warn:
        raise table.fail(
            critical_key, f"{critical_key} ({critical}) must be below {warn_key} ({warn})"
        )
    return Thresholds(currency, warn, critical)


def _check_unique_names(source: TomlSource, accounts: tuple[AccountConfig, ...]) -> None:
    seen: set[str] = set()
    for account in accounts:
        if account.name in seen:
            raise source.error(account.section, "name", f"duplicate account name {account.name!r}")
        seen.add(account.name)
