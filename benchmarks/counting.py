"""Local counting of an answer with no usage (issue 22): throughput and the worst stall of the
event loop per MB, before (main's way: the delivered text joined and encoded whole, on the
loop) and after (on the loop: `local_usage`, exact up to 32k characters and sampled beyond;
off it: `count_exact_async`, exact, in bounded pieces in a worker thread), in one run.

    PYTHONPATH=src .venv/bin/python benchmarks/counting.py [--sizes 1,5,20]

A watcher coroutine wakes every millisecond; its worst lateness while the count runs is the
stall every other request on that loop would have seen. Prints one row per way and size.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from quotaledger.wire import counting

_LINE = "The relay counts what it delivered; def f(x): return x * 2  # and some code\n"


def _before(pieces: list[str]) -> int:
    # main's `local_usage`: `count_texts(output)` = the pieces joined, encoded whole.
    return counting.count_text("".join(pieces))


def _after_on_loop(pieces: list[str]) -> int:
    return counting.local_usage(0, pieces).output


async def _measured(work: Callable[[], Awaitable[int]]) -> tuple[int, float, float]:
    worst, done = 0.0, False

    async def watch() -> None:
        nonlocal worst
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - before - 0.001)

    watcher = asyncio.ensure_future(watch())
    await asyncio.sleep(0.005)
    started = time.perf_counter()
    tokens = await work()
    elapsed = time.perf_counter() - started
    done = True
    await watcher
    return tokens, elapsed, worst


def _on_loop(function: Callable[[list[str]], int], pieces: list[str]) -> Callable[[], Any]:
    async def run() -> int:
        return function(pieces)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,5,20", help="answer sizes in MB")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    counting.encoding()  # loaded once per process, as a server does at its first prompt
    print(f"{'way':<34} {'MB':>4} {'tokens':>10} {'s':>7} {'MB/s':>8} {'stall ms':>9} {'ms/MB':>7}")
    for mb in sizes:
        text = _LINE * (mb * 1024 * 1024 // len(_LINE))
        pieces = [text[i : i + 4000] for i in range(0, len(text), 4000)]  # streamed deltas
        ways: list[tuple[str, Callable[[], Awaitable[int]]]] = [
            ("before: exact, on the loop", _on_loop(_before, pieces)),
            ("after: local_usage, on the loop", _on_loop(_after_on_loop, pieces)),
            ("after: count_exact_async, thread", lambda p=pieces: counting.count_exact_async(p)),
        ]
        for name, work in ways:
            tokens, elapsed, worst = asyncio.run(_measured(work))
            print(
                f"{name:<34} {mb:>4} {tokens:>10} {elapsed:>7.3f} {mb / elapsed:>8.1f} "
                f"{worst * 1000:>9.1f} {worst * 1000 / mb:>7.2f}"
            )


if __name__ == "__main__":
    main()
