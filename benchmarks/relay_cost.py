"""The relay's own cost per non-stream request, in-process: `POST /v1/chat/completions`
through the ASGI app (no uvicorn, no wrk) against the fake upstream in its own process on the
client core, on a fresh SQLite file (`synchronous=FULL`). CPU time of this process
(`time.process_time`: the event loop and the group-commit thread) and wall time, per request,
at each of `--levels` concurrencies; best of 5 batches.

    PYTHONPATH=src .venv/bin/python benchmarks/relay_cost.py [--requests 2000] [--levels 1,64]
        [--only relay] [--profile]

Compare trees by running it with each on `PYTHONPATH`, interleaved, in the same minute (the
machine is shared): CPU per request is the steadier figure. `--profile` prints cProfile's
top functions of the concurrent run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import asgi_cost  # noqa: E402 - found through the path above

BODY = b'{"model":"bench-gpt","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}'


def scope(key: str) -> dict[str, Any]:
    return asgi_cost.scope(
        "Bearer " + key,
        "POST",
        "/v1/chat/completions",
        ((b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))),
    )


async def one(app: Any, key: str, statuses: dict[int, int]) -> None:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    await app(scope(key), receive, send)


async def batch(app: Any, key: str, requests: int, concurrency: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    if concurrency == 1:
        for _ in range(requests):
            await one(app, key, statuses)
        return statuses
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            await one(app, key, statuses)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def measure(
    app: Any, key: str, requests: int, concurrency: int
) -> tuple[float, float, dict[int, int]]:
    """(best CPU µs, best wall µs) per request over 5 batches, and the statuses seen."""
    cpu = wall = float("inf")
    seen: dict[int, int] = {}
    for _ in range(5):
        c0, w0 = time.process_time(), time.perf_counter()
        statuses = await batch(app, key, requests, concurrency)
        cpu = min(cpu, (time.process_time() - c0) / requests * 1e6)
        wall = min(wall, (time.perf_counter() - w0) / requests * 1e6)
        for status, count in statuses.items():
            seen[status] = seen.get(status, 0) + count
    return cpu, wall, seen


def start_upstream() -> tuple[subprocess.Popen[bytes], str]:
    import httpx
    from fixtures import CLIENT_CORE, PYTHON, ROOT, free_port, pinned

    port = free_port()
    command = [PYTHON, str(ROOT / "examples/fake_upstream.py"), "--port", str(port)]
    process = subprocess.Popen(
        pinned(CLIENT_CORE, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}"


def build(work: Path, upstream: str) -> tuple[Any, Any, str]:
    """The relay's app on a fresh SQLite file, the pass-through's, and the relay key."""
    import bare_passthrough
    import relaybench

    from quotaledger.identity.bootstrap import prepare_database
    from quotaledger.server.app import create_app
    from quotaledger.settings import Settings

    url = f"sqlite:///{work / 'relay.db'}"
    env = {
        "QUOTALEDGER_DATABASE_URL": url,
        "QUOTALEDGER_ADMIN_PASSWORD": "benchmark-admin-password",
        "QUOTALEDGER_SECRET_KEY": relaybench.SECRET_KEY,
        **(
            {"QUOTALEDGER_SQLITE_SYNCHRONOUS": os.environ["QLB_SYNC"]}
            if os.environ.get("QLB_SYNC")
            else {}
        ),
    }
    settings = Settings.from_env(env)
    database = prepare_database(settings)
    key = relaybench.provision(url, upstream)
    os.environ["QLB_UPSTREAM"] = upstream
    return create_app(settings, database), bare_passthrough.create_app(), key


async def main(
    app: Any, ceiling: Any, key: str, requests: int, levels: tuple[int, ...], only: str,
    profile: bool,
) -> None:  # fmt: skip
    await batch(app, key, 200, 8)  # warm up: tokenizer, pools, offers
    await batch(ceiling, key, 200, 8)
    import quotaledger

    print(f"tree: {Path(quotaledger.__file__).parent}", flush=True)
    for c in levels:
        for name, served in (("pass-through", ceiling), ("relay", app)):
            if only and name != only:
                continue
            cpu, wall, seen = await measure(served, key, requests, c)
            print(
                f"{name:12} c={c:<3} CPU {cpu:7.1f} µs/request  "
                f"wall {wall:7.1f} µs/request  statuses {seen}",
                flush=True,
            )
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await batch(app, key, requests, levels[-1])
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
    await app.services.relay.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--levels", default="1,64", help="concurrencies to run [1,64]")
    parser.add_argument("--only", default="", choices=("", "relay", "pass-through"))
    arguments = parser.parse_args()
    levels = tuple(int(n) for n in arguments.levels.split(",") if n)
    os.environ.pop("QUOTALEDGER_DATABASE_URL", None)
    import uvloop

    upstream, upstream_url = start_upstream()
    try:
        with tempfile.TemporaryDirectory() as work:
            app, ceiling, key = build(Path(work), upstream_url)
            uvloop.run(
                main(app, ceiling, key, arguments.requests, levels, arguments.only,
                     arguments.profile)
            )  # fmt: skip
    finally:
        upstream.terminate()
        upstream.wait()
