"""Instructions per request of each hot path, counted by valgrind (callgrind): the same
figure for the same code whatever else the machine is doing, so two trees can be compared
on a shared machine where times move by tens of percent.

    .venv/bin/python benchmarks/asgi_instructions.py [--src old=/tmp/old/src] [--src new=src]

For each tree and path it runs `asgi_cost.py`'s loop under callgrind twice, with 500 and
2,500 requests (after the same 500 warm-up requests): (instructions of the longer run -
instructions of the shorter) / 2,000 is the cost of one request, start-up and imports
cancelled out. Needs valgrind; ~1 minute per tree and path (`relay`, the non-stream chat of
`relay_cost.py` at 64 concurrent requests: ~3 minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATHS = ("balance", "401-unknown", "401-malformed", "429", "relay")
SHORT, LONG = 500, 2_500


async def _run(path: str, requests: int) -> None:
    sys.path.insert(0, str(HERE))
    if path == "relay":
        await _run_relay(requests)
        return
    import asgi_cost

    from quotaledger.tokens import _checksum

    with tempfile.TemporaryDirectory() as work:
        built, token = asgi_cost.apps(Path(work))
        unknown = "ql_" + "A" * 32 + _checksum("A" * 32)  # the same one in every run
        app, sent = {
            "balance": ("off", token),
            "401-unknown": ("off", unknown),
            "401-malformed": ("off", "ql_" + "B" * 38),
            "429": ("limited", token),
        }[path]
        await asgi_cost.per_request_us(built[app], sent, requests)


async def _run_relay(requests: int) -> None:
    """`relay_cost.py`'s non-stream chat at 64 concurrent requests, against the fake
    upstream in its own process (valgrind does not follow it: only the relay is counted)."""
    import relay_cost

    upstream, url = relay_cost.start_upstream()
    try:
        with tempfile.TemporaryDirectory() as work:
            app, _, key = relay_cost.build(Path(work), url)
            await relay_cost.batch(app, key, 500, 64)  # warm up: tokenizer, pools, offers
            await relay_cost.batch(app, key, requests, 64)
            await app.services.relay.close()
    finally:
        upstream.terminate()
        upstream.wait()


def instructions(src: str, path: str, requests: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--child", path, str(requests)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--src", action="append", metavar="NAME=PATH", help="a tree to measure [this one]"
    )
    parser.add_argument("--only", help=f"comma-separated paths of {', '.join(PATHS)}")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        import uvloop

        uvloop.run(_run(arguments.child[0], int(arguments.child[1])))
        return
    trees = [s.split("=", 1) for s in arguments.src or [f"this={HERE.parent / 'src'}"]]
    paths = arguments.only.split(",") if arguments.only else PATHS
    print(f"{'path':16}" + "".join(f"{name:>14}" for name, _ in trees), flush=True)
    for path in paths:
        costs = []
        for _, src in trees:
            extra = instructions(src, path, LONG) - instructions(src, path, SHORT)
            costs.append(extra / (LONG - SHORT))
        print(f"{path:16}" + "".join(f"{cost:>14,.0f}" for cost in costs), flush=True)


if __name__ == "__main__":
    main()
