"""The app's own cost per request, without a network or a server: each hot path's ASGI
app called in a loop on uvloop, against the ceiling app (`bare_passthrough.py`). Best of 5
batches, in microseconds; a profile's view (what our code costs), not a throughput.

    .venv/bin/python benchmarks/asgi_cost.py [--requests 20000] [--cpu]

`--cpu` times CPU time (`time.process_time`) instead of wall time: steadier on a machine
that other work shares, and what the end of session 3 compared old and new trees with.

Under wrk the same code costs two to three times as much (caches, the server around it):
compare these figures with each other, and the throughputs of `run.py` with theirs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope(
    token: str | None,
    method: str = "GET",
    path: str = "/api/user/self",
    headers: tuple[tuple[bytes, bytes], ...] = ((b"accept-encoding", b"gzip"),),
) -> dict[str, Any]:
    """One request's ASGI scope: `token` in `Authorization` as it is sent (raw or Bearer)."""
    sent = [(b"host", b"127.0.0.1:8000"), *headers]
    if token:
        sent.append((b"authorization", token.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": sent,
        "state": {},
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def per_request_us(
    app: App, token: str | None, requests: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, set[int]]:
    statuses: set[int] = set()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    for _ in range(500):  # warm up: caches, lazily opened connections
        await app(scope(token), receive, send)
    statuses.clear()
    best = float("inf")
    batch = max(requests // 5, 1)
    for _ in range(5):
        started = clock()
        for _ in range(batch):
            await app(scope(token), receive, send)
        best = min(best, (clock() - started) / batch * 1e6)
    return best, statuses


def apps(workdir: Path) -> tuple[dict[str, App], str]:
    from quotaledger.identity import accounts
    from quotaledger.identity.bootstrap import prepare_database
    from quotaledger.server.app import create_app
    from quotaledger.settings import Settings

    url = f"sqlite:///{workdir / 'asgi.db'}"
    built: dict[str, App] = {}
    token = ""
    for name, rate in (("off", "off"), ("limited", "1/hour")):
        env = {
            "QUOTALEDGER_DATABASE_URL": url,
            "QUOTALEDGER_ADMIN_PASSWORD": "benchmark-admin-password",
            "QUOTALEDGER_RATE_LIMIT_BALANCE": rate,
        }
        settings = Settings.from_env(env)
        database = prepare_database(settings)
        if not token:
            account = accounts.create_account(database, "bench", "bench-password-123", quota=10**7)
            token = accounts.replace_token(database, account.id)
        built[name] = create_app(settings, database)
    os.environ.pop("QLB_CEILING_BODY", None)
    import bare_passthrough

    built["ceiling"] = bare_passthrough.create_app()
    return built, token


async def main(requests: int, cpu: bool = False) -> None:
    from quotaledger.tokens import generate_token

    with tempfile.TemporaryDirectory() as work:
        built, token = apps(Path(work))
        cases = [
            ("ceiling: bare Starlette route", "ceiling", None),
            ("GET /api/user/self", "off", token),
            ("401 well-formed unknown token", "off", generate_token()),
            ("401 malformed token", "off", "ql_" + "B" * 38),
            ("429 over the limit (1/hour)", "limited", token),
        ]
        for label, app, sent in cases:
            clock = time.process_time if cpu else time.perf_counter
            cost, statuses = await per_request_us(built[app], sent, requests, clock)
            print(f"{label:32} {cost:6.1f} µs   statuses {sorted(statuses)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--cpu", action="store_true", help="time CPU time, not wall time")
    arguments = parser.parse_args()
    import uvloop

    uvloop.run(main(arguments.requests, arguments.cpu))
