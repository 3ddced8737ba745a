"""Server settings: one object, read from `QUOTALEDGER_*` environment variables, overridden
by command-line flags, built at the entry point and passed down (never at import time)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

# Re-exported: settings hold secrets, but Secret has a module of its own (the monitor's too).
from quotaledger.secret import Secret as Secret

ENV_PREFIX = "QUOTALEDGER_"


def default_database_path() -> Path:
    """The embedded default: `quotaledger.db` in the user's data directory
    (`~/.local/share/quotaledger/` on Linux), not the current one, so that `serve` and the
    admin commands find the same file wherever they are run."""
    return platformdirs.user_data_path("quotaledger") / "quotaledger.db"


def default_database_url() -> str:
    return f"sqlite:///{default_database_path()}"


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    """Every server setting, with its environment variable `QUOTALEDGER_<NAME>`."""

    database_url: str = field(default_factory=default_database_url)
    redis_url: Secret | None = None
    admin_password: Secret | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # "60/minute" style strings for the `limits` library, or "off".
    rate_limit_balance: str = "60/minute"
    rate_limit_login: str = "5/minute"
    rate_limit_login_address: str = "20/minute"
    # Wrong passwords (server.login_throttle): this many per account and client address,
    # or per address over every account, then each attempt waits 1 s, 2 s, 4 s ... at most
    # login_max_delay seconds (429 with Retry-After until then).
    login_free_failures: int = 3
    login_address_free_failures: int = 20
    login_max_delay: int = 300
    rate_limit_redeem: str = "10/minute"
    rate_limit_redeem_address: str = "30/minute"
    # Test notifications (`POST /api/user/alerts/test`) per account.
    rate_limit_alert_test: str = "5/minute"
    # Users' alert URLs (issue 26): the schemes they may use (empty: the built-in short
    # list, `alerting.targets.DEFAULT_SCHEMES`), and hosts, addresses or networks they may
    # reach besides public addresses (say, a receiver on 127.0.0.1 or 10.0.0.0/8).
    alert_allow_schemes: tuple[str, ...] = ()
    alert_allow_hosts: tuple[str, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    always_gzip: bool = False
    # "public", "admin" (admin token required) or "off".
    metrics: str = "public"
    # SQLite durability: FULL survives power loss; NORMAL is a documented opt-in.
    sqlite_synchronous: str = "FULL"
    # How long a write waits for SQLite's lock before giving up (503 to the client).
    sqlite_busy_timeout_ms: int = 30_000
    max_body_bytes: int = 64 * 1024
    # A request's head (request line and headers): larger gets 431; slower gets 408.
    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    # A request body must arrive whole within this many seconds (408), whatever its size.
    body_timeout: float = 30.0
    # Requests in progress per client address; more get 429 (slow-body floods, issue 26).
    max_requests_per_address: int = 256
    # Bytes of large relay bodies (over max_body_bytes) read at once, per process; the
    # next one waits for room (or, after body_timeout, gets 503).
    relay_body_bytes_in_flight: int = 128 * 1024 * 1024
    # One line per request from the engine (Granian); off on the hot path by default.
    access_log: bool = False
    session_max_age: int = 7 * 24 * 3600
    log_level: str = "INFO"
    # The relay (SPEC §8). The secret key encrypts upstream channel keys at rest.
    secret_key: Secret | None = None
    # The least output per choice a reservation is lowered to before the request is refused
    # with 402 (SPEC §8b, `billing.sizing`).
    relay_min_output_tokens: int = 1024
    relay_retries: int = 2
    relay_reservation_ttl: int = 900
    relay_stream_idle_timeout: int = 300
    relay_sweep_interval: int = 60
    # Relay request bodies (chat histories, images) are larger than the API's.
    relay_max_body_bytes: int = 32 * 1024 * 1024
    # Limits and channel health (SPEC §12). With QUOTALEDGER_REDIS_URL set and Redis away:
    # `local` (count per instance) or `refuse` (503).
    limits_fallback: str = "local"
    # A concurrency slot's lease: a holder that died frees its slots after this long.
    limits_lease_ttl: int = 300
    # `count_tokens` calls per key and minute, counted toward no other limit.
    rate_limit_count_tokens: int = 600
    # A channel's transient failures (timeouts, 429, 5xx) in a row within the window that
    # cool it down, and its first cool-down (doubled each time in a row), SPEC §12.
    channel_failures_to_cool: int = 3
    channel_failure_window: int = 60
    channel_cooldown: int = 30
    # Seconds between two polls of a channel's upstream balance.
    channel_balance_interval: int = 900
    # Apprise URLs (comma or space separated) for the operator's alerts (channel balances).
    operator_alert_urls: Secret | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment, then `overrides` (flags) on top; `None` is ignored."""
        environ = os.environ if environ is None else environ
        _refuse_retired(environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = _convert(name, value) if isinstance(value, str) else value
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        if self.metrics not in {"public", "admin", "off"}:
            raise SettingsError("QUOTALEDGER_METRICS must be public, admin or off")
        if self.sqlite_synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise SettingsError("QUOTALEDGER_SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA")
        if not 1 <= self.port <= 65535:
            raise SettingsError("QUOTALEDGER_PORT must be between 1 and 65535")
        if self.sqlite_busy_timeout_ms < 0:
            raise SettingsError("QUOTALEDGER_SQLITE_BUSY_TIMEOUT_MS must be 0 or more")
        if self.workers < 1:
            raise SettingsError("QUOTALEDGER_WORKERS must be at least 1")
        if self.max_header_bytes < 1024:
            raise SettingsError("QUOTALEDGER_MAX_HEADER_BYTES must be at least 1024")
        if not 0 < self.header_timeout <= 3600:
            raise SettingsError("QUOTALEDGER_HEADER_TIMEOUT must be between 0 and 3600 seconds")
        if not 0 < self.body_timeout <= 3600:
            raise SettingsError("QUOTALEDGER_BODY_TIMEOUT must be between 0 and 3600 seconds")
        if self.login_max_delay > 86_400:
            raise SettingsError("QUOTALEDGER_LOGIN_MAX_DELAY must be at most 86400 seconds")
        if self.max_requests_per_address < 1:
            raise SettingsError("QUOTALEDGER_MAX_REQUESTS_PER_ADDRESS must be at least 1")
        if self.relay_body_bytes_in_flight < self.relay_max_body_bytes:
            raise SettingsError(
                "QUOTALEDGER_RELAY_BODY_BYTES_IN_FLIGHT must be at least "
                "QUOTALEDGER_RELAY_MAX_BODY_BYTES"
            )
        for name in _RATE_LIMITS:
            _check_rate(name, getattr(self, name))
        _check_relay(self)
        if self.limits_fallback not in {"local", "refuse"}:
            raise SettingsError("QUOTALEDGER_LIMITS_FALLBACK must be local or refuse")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_INTEGERS = {
    "port",
    "workers",
    "max_body_bytes",
    "max_header_bytes",
    "session_max_age",
    "sqlite_busy_timeout_ms",
}


def _convert(name: str, raw: str) -> Any:
    var = ENV_PREFIX + name.upper()
    try:
        if name in {
            "port",
            "workers",
            "max_body_bytes",
            "max_header_bytes",
            "session_max_age",
            "sqlite_busy_timeout_ms",
            "max_requests_per_address",
            "relay_body_bytes_in_flight",
        }:
            return int(raw)
        if name in _RELAY_MINIMUMS:
            return int(raw)
        if name == "secret_key":
            return Secret(raw)
        if name in {"header_timeout", "body_timeout"}:
            return float(raw)
        if name in {"always_gzip", "access_log"}:
            return _parse_bool(raw)
        if name in {"redis_url", "admin_password", "operator_alert_urls"}:
            return Secret(raw)
        if name == "trusted_proxies":
            return tuple(
                ipaddress.ip_network(part.strip(), strict=False)
                for part in raw.split(",")
                if part.strip()
            )
        if name == "database_url":
            return normalise_database_url(raw)
        if name in {"alert_allow_schemes", "alert_allow_hosts"}:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"{var}: {exc}") from None
    return raw


# The integer settings of the relay (and of the login throttle) and their smallest sensible
# value.
_RELAY_MINIMUMS = {
    "relay_min_output_tokens": 1,
    "relay_retries": 0,
    "relay_reservation_ttl": 1,
    "relay_stream_idle_timeout": 1,
    "relay_sweep_interval": 1,
    "relay_max_body_bytes": 1024,
    "limits_lease_ttl": 5,
    "rate_limit_count_tokens": 1,
    "channel_balance_interval": 60,
    "channel_failures_to_cool": 1,
    "channel_failure_window": 1,
    "channel_cooldown": 1,
    "login_free_failures": 1,
    "login_address_free_failures": 1,
    "login_max_delay": 1,
}
_RATE_LIMITS = (
    "rate_limit_balance",
    "rate_limit_login",
    "rate_limit_login_address",
    "rate_limit_redeem",
    "rate_limit_redeem_address",
    "rate_limit_alert_test",
)


# Settings no longer read. Set to anything but `off`, the server refuses to start rather
# than run without the limit its operator asked for.
_RETIRED = {
    "RATE_LIMIT_RELAY": "rate limits are per key, account and group now (SPEC §12): "
    "`key update ID --rpm N`, or `group limits GROUP --rpm N` for each member of a group",
}


def _refuse_retired(environ: Mapping[str, str]) -> None:
    for name, instead in _RETIRED.items():
        if environ.get(ENV_PREFIX + name, "off").strip() not in ("", "off"):
            raise SettingsError(f"{ENV_PREFIX}{name} is no longer read: {instead}")


def _check_relay(settings: Settings) -> None:
    for name, minimum in _RELAY_MINIMUMS.items():
        if getattr(settings, name) < minimum:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be at least {minimum}")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {raw!r}")


def _check_rate(name: str, value: str) -> None:
    if value == "off":
        return
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}: {value!r} is not a rate such as '60/minute' or 'off'"
        ) from None


def normalise_database_url(url: str) -> str:
    """Accept the URLs people write (`postgresql://`, `postgres://`, a bare file path) and
    return the SQLAlchemy URL for the driver we ship (psycopg 3)."""
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    elif "://" not in url and not url.startswith("sqlite:"):
        return "sqlite:///" + url
    elif not url.startswith(("sqlite:", "postgresql+")):
        raise ValueError(f"unsupported database URL scheme in {url.split('://', 1)[0]!r}://")
    _check_parts(url)
    return url


def _check_parts(url: str) -> None:
    """Refuse a URL that would be misread, in words that never repeat it (it may hold a
    password): an unencoded `@` in the password makes the rest of the password the host
    name, which a connection error would then print."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError("not a database URL (expected postgresql://user@host/db)") from None
    if parsed.host and "@" in parsed.host:
        raise ValueError("the password holds an unencoded '@': write it as %40")


_SECRET_QUERY_KEYS = ("pass", "secret", "token")


def redact_database_url(url: str) -> str:
    """`url` fit for a log line, a console or an error: the password and any password-like
    query parameter (`?password=`, `?sslpassword=`) shown as `***`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://***"  # unreadable: show nothing of the rest
    query = {
        key: "***" if any(word in key.lower() for word in _SECRET_QUERY_KEYS) else value
        for key, value in parsed.query.items()
    }
    shown = parsed.set(query=query).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")  # the query's `***`, percent-encoded
