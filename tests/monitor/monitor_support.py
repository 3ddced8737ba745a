"""Helpers of the monitor tests: a relay in the new-api format whose balance a test sets
(real HTTP on 127.0.0.1), a webhook receiver for `json://` notifications, an in-memory
Apprise plugin (`memory://`), a clock the test moves, and a `Rig` that drives the watcher
one poll at a time. The fixtures that build them are in conftest.py."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from quotaledger.monitor.config import WatchConfig, load_config
from quotaledger.monitor.history import History
from quotaledger.monitor.metrics import MonitorMetrics
from quotaledger.monitor.notify import Notifier, apprise_module, check_url
from quotaledger.monitor.tokens import resolve_keys, resolve_tokens
from quotaledger.monitor.watcher import Result, Watcher

TOKEN = "s3cretRelayToken0123456789abcdef"  # a relay's own token: no ql_ checksum
KEY = "sk-laptopKey0123456789abcdefghijklmnopqrstuvwxyzAB"  # a new-api relay's API key
ENVIRONMENT = {"PROD_TOKEN": TOKEN, "DEV_TOKEN": TOKEN, "LAPTOP_KEY": KEY}
QUOTA_PER_USD = 500_000

# ------------------------------------------------------------------ the in-memory plugin

MEMORY: list[dict[str, str]] = []


def _remember(body: str, title: str, notify_type: Any, *args: Any, **kwargs: Any) -> bool:
    MEMORY.append({"title": title, "body": body, "type": str(notify_type)})
    return True


apprise_module().decorators.notify(on="memory", name="quotaledger test memory")(_remember)


# ------------------------------------------------------------------ loopback HTTP servers


class LoopbackServer:
    """A threaded stdlib HTTP server on 127.0.0.1 with a free port."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = owner  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class Relay:
    """The balance a new-api style relay reports; tests change it between polls."""

    quota: int = 50 * QUOTA_PER_USD
    used_quota: int = 0
    request_count: int = 0
    failing: int | None = None  # an HTTP status to answer with instead of the balance
    failing_headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After
    extra: dict[str, Any] = field(default_factory=dict)  # more fields in `data`
    set_cookie: str | None = None  # a Set-Cookie header on every balance answer
    cookies: list[str] = field(default_factory=list)  # Cookie headers received
    authorizations: list[str] = field(default_factory=list)
    base_url: str = ""
    delay: float = 0.0  # seconds each balance answer takes
    key_quota: int = 5 * QUOTA_PER_USD  # the key "laptop": what it may still spend
    key_used: int = 0  # its cumulative total_used
    key_unlimited: bool = False
    status_requests: int = 0  # GET /api/status received
    status_failing: int | None = None  # an HTTP status to answer /api/status with
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_usd(self, usd: float | int | str) -> None:
        self.quota = int(Decimal(str(usd)) * QUOTA_PER_USD)

    def spend_key(self, quota: int) -> None:
        """A request made with the key: it spends the key's budget and the account's."""
        self.key_quota -= quota
        self.key_used += quota
        self.spend(quota)

    def spend(self, quota: int) -> None:
        self.quota -= quota
        self.used_quota += quota
        self.request_count += 1


class RelayHandler(_Quiet):
    def do_GET(self) -> None:
        relay: Relay = self.server.owner  # type: ignore[attr-defined]
        if self.path == "/api/status":
            with relay.lock:
                relay.status_requests += 1
            if relay.status_failing is not None:
                return self.reply(relay.status_failing, {"success": False})
            return self.reply(200, {"success": True, "data": {"quota_per_unit": QUOTA_PER_USD}})
        if self.path.startswith("/api/usage/token"):
            return self._key_usage(relay)
        relay.authorizations.append(self.headers.get("Authorization", ""))
        relay.cookies.append(self.headers.get("Cookie", ""))
        with relay.lock:
            relay.in_flight += 1
            relay.most_in_flight = max(relay.most_in_flight, relay.in_flight)
        time.sleep(relay.delay)
        with relay.lock:
            relay.in_flight -= 1
        if relay.failing is not None:
            # Echo the token, as careless servers do: it must be scrubbed before it is kept.
            message = f"upstream broke for {self.headers.get('Authorization')}"
            body = {"success": False, "message": message}
            return self.reply(relay.failing, body, relay.failing_headers)
        if self.headers.get("Authorization") != TOKEN:
            return self.reply(401, {"success": False, "message": "invalid token"})
        data = {
            "id": 1, "username": "alice", "group": "default", "quota": relay.quota,
            "used_quota": relay.used_quota, "request_count": relay.request_count,
            "ModelFixedPrice": [], **relay.extra,
        }  # fmt: skip
        cookie = {"Set-Cookie": relay.set_cookie} if relay.set_cookie else {}
        self.reply(200, {"success": True, "message": "", "data": data}, cookie)

    def _key_usage(self, relay: Relay) -> None:
        """new-api's GetTokenUsage answer (tests/client/fixtures/newapi_token_usage.json)."""
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self.reply(401, {"success": False, "message": "无效的令牌"})
        data = {
            "object": "token_usage", "name": "laptop",
            "total_granted": relay.key_quota + relay.key_used, "total_used": relay.key_used,
            "total_available": relay.key_quota, "unlimited_quota": relay.key_unlimited,
            "model_limits": {}, "model_limits_enabled": False, "expires_at": 0,
        }  # fmt: skip
        self.reply(200, {"code": True, "message": "ok", "data": data})


@dataclass
class Webhook:
    """JSON bodies POSTed to the receiver."""

    received: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


class WebhookHandler(_Quiet):
    def do_POST(self) -> None:
        webhook: Webhook = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", "0"))
        webhook.received.append(json.loads(self.rfile.read(length)))
        self.reply(200, {"ok": True})


# ------------------------------------------------------------------ clock, config, watcher


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **kwargs: float) -> None:
        self.moment += timedelta(**kwargs)


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def account_toml(
    relay: Relay,
    name: str = "prod",
    token_env: str | None = "PROD_TOKEN",
    warn_usd: float = 20,
    critical_usd: float = 5,
    **extra: Any,
) -> str:
    lines = ["[[account]]", f'name = "{name}"', f'base_url = "{relay.base_url}"']
    if token_env is not None:
        lines.append(f'token_env = "{token_env}"')
    lines += [f"warn_usd = {warn_usd}", f"critical_usd = {critical_usd}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def defaults_toml(*urls: str, **extra: Any) -> str:
    lines = ["[defaults]", 'interval = "5m"', 'repeat = "6h"', "retries = 0"]
    lines.append(f"notify = {json.dumps(list(urls))}")
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n\n"


class Rig:
    """The watcher of one config, stepped poll by poll with the fake clock."""

    def __init__(self, config_path: Path, state: Path, clock: Clock) -> None:
        self.config_path, self.state, self.clock = config_path, state, clock
        self.metrics = MonitorMetrics()
        self.watcher: Watcher | None = None
        self.history: History | None = None

    @property
    def config(self) -> WatchConfig:
        return load_config(self.config_path, check_url=check_url)

    async def start(self) -> None:
        config = self.config
        tokens, keys = resolve_tokens(config, ENVIRONMENT), resolve_keys(config, ENVIRONMENT)
        self.history = History(self.state)
        self.watcher = Watcher(
            config, tokens, self.history, Notifier(), now=self.clock, metrics=self.metrics,
            keys=keys,
        )  # fmt: skip
        await self.watcher.__aenter__()

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.__aexit__(None, None, None)
        if self.history is not None:
            self.history.close()
        self.watcher = self.history = None

    async def restart(self) -> None:
        """A new process on the same state file: nothing in memory survives."""
        await self.stop()
        await self.start()

    async def poll(self, **advance: float) -> list[Result]:
        """Move the clock by `advance` (e.g. minutes=5), then run one poll of every account."""
        self.clock.advance(**advance)
        assert self.watcher is not None
        return await self.watcher.poll_round()
