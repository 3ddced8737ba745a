"""The server engine, chosen by measurement (issue 25 item 1): the same applications on
uvicorn (httptools, uvloop), Granian (ASGI, `--http auto`) and Hypercorn (uvloop), side by
side in one run, wrk on the client core, every server on the server core, one worker each,
access logs off on all of them (Granian's default; `--no-access-log` for uvicorn).

    .venv/bin/python benchmarks/engines.py [--rounds 3] [--duration 4] [--connections 64]

Per engine: a bare Starlette JSON route (`bare_passthrough.py`, `GET /api/user/self` with
the bytes the real server answers), quotaledger's `GET /api/user/self` (the app factory
`quotaledger.server.app:app_from_env`; on uvicorn with the bounded protocol uvicorn ran
before the switch) and a relayed non-stream `POST /v1/chat/completions` (13 output tokens
from examples/fake_upstream.py on the client core), and the bare pass-through
(`bare_passthrough.py`: Starlette + aiohttp, nothing of quotaledger's) for the same chat.
Cases interleaved round by round; the table shows medians and ratios within this run.
Writes benchmarks/results/engines-latest.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fixtures import (
    BIN,
    ROOT,
    Server,
    _spawn,
    _wait_ready,
    clean_env,
    free_port,
    load_users,
    migrate,
    sqlite_url,
    username,
)
from harness import log
from loadgen import run_wrk
from relaybench import MODEL, SECRET_KEY, provision, start_upstream

BENCH = str(ROOT / "benchmarks")
APP = "quotaledger.server.app:app_from_env"
BARE = "bare_passthrough:create_app"
OLD_PROTOCOL = "quotaledger.server.connections:BoundedHttpToolsProtocol"


def command(engine: str, target: str, port: int, *, ours: bool) -> list[str]:
    if engine == "uvicorn":
        http = OLD_PROTOCOL if ours and _has_old_protocol() else "httptools"
        return [str(BIN / "uvicorn"), target, "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--http", http, "--loop", "uvloop", "--no-access-log",
                "--no-server-header", "--log-level", "warning"]  # fmt: skip
    if engine == "granian":
        return [str(BIN / "granian"), "--interface", "asgi", "--factory", "--http", "auto",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                "--no-access-log", target]  # fmt: skip
    return [str(BIN / "hypercorn"), "--worker-class", "uvloop", "--bind",
            f"127.0.0.1:{port}", "--log-level", "warning", target + "()"]  # fmt: skip


def _has_old_protocol() -> bool:
    import importlib.util

    spec = importlib.util.find_spec("quotaledger.server.connections")
    return spec is not None and "BoundedHttpToolsProtocol" in Path(str(spec.origin)).read_text()


def start(name: str, engine: str, target: str, work: Path, **env: str) -> Server:
    port = free_port()
    environment = clean_env(PYTHONPATH=BENCH, **env)
    server = _spawn(
        name, command(engine, target, port, ours=target == APP), environment, work, port
    )
    return _wait_ready(server, "/healthz" if target == APP else "/__ceiling__")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--engines", default="uvicorn,granian,hypercorn")
    args = parser.parse_args()
    engines = args.engines.split(",")
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="ql-engines-") as folder:
        work = Path(folder)
        try:
            cases = setup(work, engines, servers)
            results = rounds(cases, servers, args)
        finally:
            for server in servers.values():
                server.stop()
    report(results, engines, args)


def setup(work: Path, engines: list[str], servers: dict[str, Server]) -> list[tuple[str, ...]]:
    log("loading 1,000 users; provisioning the relay")
    small = load_users(work / "small.db", 1000, probes=10)
    token = small.probe_tokens[username(500)]
    upstream = start_upstream(work)
    servers["upstream"] = upstream
    migrate(work / "relay.db")
    key = provision(sqlite_url(work / "relay.db"), upstream.base_url)
    ours = {"QUOTALEDGER_RATE_LIMIT_BALANCE": "off", "QUOTALEDGER_SECRET_KEY": SECRET_KEY}
    cases: list[tuple[str, ...]] = []
    body_file = work / "balance.json"
    for engine in engines:
        log(f"starting the servers on {engine}")
        servers[f"self-{engine}"] = start(
            f"self-{engine}", engine, APP, work, QUOTALEDGER_DATABASE_URL=small.url, **ours
        )
        if not body_file.exists():
            plain = {"Authorization": token, "Accept-Encoding": "identity"}
            reply = httpx.get(servers[f"self-{engine}"].base_url + "/api/user/self", headers=plain)
            body_file.write_bytes(reply.content)
        servers[f"bare-{engine}"] = start(
            f"bare-{engine}", engine, BARE, work, QLB_UPSTREAM=upstream.base_url,
            QLB_CEILING_BODY=str(body_file),
        )  # fmt: skip
        servers[f"relay-{engine}"] = start(
            f"relay-{engine}", engine, APP, work,
            QUOTALEDGER_DATABASE_URL=sqlite_url(work / "relay.db"), **ours,
        )  # fmt: skip
        cases += [
            (f"bare JSON route, {engine}", f"bare-{engine}", "/api/user/self", "get.lua", token),
            (f"GET /api/user/self, {engine}", f"self-{engine}", "/api/user/self", "get.lua",
             token),
            (f"bare pass-through chat, {engine}", f"bare-{engine}", "/v1/chat/completions",
             "chat.lua", key),
            (f"relay chat (non-stream), {engine}", f"relay-{engine}", "/v1/chat/completions",
             "chat.lua", key),
        ]  # fmt: skip
    return cases


def rounds(
    cases: list[tuple[str, ...]], servers: dict[str, Server], args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {case[0]: [] for case in cases}
    for number in range(args.rounds + 1):  # round 0 warms every server up
        for label, server, path, script, token in cases:
            env = {"QLB_TOKEN": token, "QLB_MODEL": MODEL}
            duration = 1.0 if number == 0 else args.duration
            run = run_wrk(servers[server].base_url + path, script, duration=duration,
                          connections=args.connections, env=env)  # fmt: skip
            if number:
                results[label].append(run.as_dict())
                log(f"round {number}: {label}: {run.requests_per_s:,.0f} req/s"
                    f" (non-2xx {run.non_2xx}, errors {run.socket_errors})")  # fmt: skip
    return results


def report(
    results: dict[str, list[dict[str, float]]], engines: list[str], args: argparse.Namespace
) -> None:
    def median(label: str, field: str = "requests_per_s") -> float:
        return statistics.median(run[field] for run in results[label])

    fastest_bare = max(engines, key=lambda e: median(f"bare JSON route, {e}"))
    fastest_pass = max(engines, key=lambda e: median(f"bare pass-through chat, {e}"))
    print(f"\n{args.rounds} rounds x {args.duration:g} s, {args.connections} connections, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    print(f"| case | req/s | p99 ms | vs fastest bare ({fastest_bare}/{fastest_pass}) |")
    print("|---|---|---|---|")
    for label in results:
        base = (f"bare pass-through chat, {fastest_pass}" if "chat" in label
                else f"bare JSON route, {fastest_bare}")  # fmt: skip
        bad = sum(run["non_2xx"] + run["socket_errors"] for run in results[label])
        errors = f" (ERRORS {bad})" if bad else ""
        print(f"| {label} | {median(label):,.0f} | {median(label, 'p99_ms'):.1f} | "
              f"{median(label) / median(base):.2f}x{errors} |")  # fmt: skip
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "engines-latest.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
