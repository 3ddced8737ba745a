"""The stream load client (wrk cannot read server-sent events): N concurrent streaming
requests with aiohttp on uvloop, every event parsed with the relay's own SSE parser, and per
stream the time to the first event and each event's lateness against the upstream's schedule.

    python benchmarks/relay_streams.py URL --streams 1000 --events 200 --seconds 20 \
        [--token KEY] [--anthropic] [--header-scenario] [--ramp 2]

All the streams are opened at once, or with `--ramp S` evenly over S seconds (stream i
opens i/N x S after the first; with S well under the stream's duration they still all end up
open together: `peak_concurrent` says how many were). Prints one JSON object: streams asked,
completed (every event and the terminal one), dropped, the time-to-first-event percentiles
(ms, each from its own stream's request), and the event lateness percentiles (ms): event k's
arrival minus the first event's arrival minus k x the upstream's pause between events (it
includes the upstream's own drift: it sleeps the pause after each write), and, when the
upstream stamps its events (the fake's `stamp` scenario), each event's transit time: its
arrival minus the moment the upstream wrote it. Run
the same load straight at the upstream and through a relay: the differences are what the
relay adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from typing import Any

import aiohttp

from quotaledger.wire.sse import SSEParser


def body(anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {
            "model": "bench-claude",
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": "Say hello."}],
        }
    return {
        "model": "bench-gpt",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Say hello."}],
    }


def scenario(words: int, seconds: float) -> dict[str, Any]:
    return {"text": "word " * words, "duration": seconds}


# The fake upstream's `stamp` scenario: the time (its monotonic clock, the same as ours on
# one machine) at which it wrote the event, first in the event's JSON.
_SENT = re.compile(r'\{"x_sent":([0-9.]+),')


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    pause: float,
    expected: int,
    ttfe: list[float],
    lateness: list[float],
    sample_every: int,
    delay: float = 0.0,
    spans: list[tuple[float, float]] | None = None,
    transit: list[float] | None = None,
) -> bool:
    if delay:
        await asyncio.sleep(delay)
    parser, seen, first = SSEParser(), 0, 0.0
    started = time.perf_counter()
    try:
        async with session.post(url, json=payload, headers=headers) as response:
            if response.status != 200:
                return False
            async for chunk in response.content.iter_any():
                now, clock = time.perf_counter(), time.monotonic()
                for event in parser.feed(chunk):
                    if seen == 0:
                        first = now
                        ttfe.append((now - started) * 1000)
                    elif seen % sample_every == 0:
                        lateness.append((now - first - seen * pause) * 1000)
                        if transit is not None and (sent := _SENT.match(event.data)):
                            transit.append((clock - float(sent.group(1))) * 1000)
                    seen += 1
    except (aiohttp.ClientError, TimeoutError):
        return False
    finally:
        if spans is not None:
            spans.append((started, time.perf_counter()))
    return seen >= expected


def peak_concurrency(spans: list[tuple[float, float]]) -> int:
    """The most streams open at one time (each from its request to its last byte)."""
    moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = now = 0
    for _, step in moments:
        now += step
        peak = max(peak, now)
    return peak


async def run(args: argparse.Namespace) -> dict[str, Any]:
    events = args.events
    # OpenAI: role chunk, the words, finish chunk, usage chunk, [DONE]; Anthropic:
    # message_start, block start, the words, block stop, message_delta, message_stop (+ ping).
    words = events - 4 if not args.anthropic else events - 6
    pause = args.seconds / events if args.seconds else 0.0
    headers = {"Authorization": f"Bearer {args.token}"}
    if args.anthropic:
        headers["anthropic-version"] = "2023-06-01"
    if args.header_scenario:
        headers["X-Fake-Scenario"] = json.dumps(scenario(words, args.seconds))
    ttfe: list[float] = []
    lateness: list[float] = []
    spans: list[tuple[float, float]] = []
    transit: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.seconds * 4 + 60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()

        def stream(delay: float = 0.0, concurrent: bool = True) -> Any:
            return one_stream(
                session, args.url, headers, body(args.anthropic), pause,
                args.expect or events, ttfe, lateness, args.sample_every, delay,
                spans if concurrent else None, transit if concurrent else None,
            )  # fmt: skip

        if args.sequential:
            done = [await stream(concurrent=False) for _ in range(args.streams)]
        else:
            # --ramp: stream i opens i/N of the ramp after the first.
            ramp = args.ramp / args.streams
            done = await asyncio.gather(*(stream(ramp * i) for i in range(args.streams)))
        wall = time.perf_counter() - started
    completed = sum(done)
    return {
        "streams": args.streams,
        "completed": completed,
        "dropped": args.streams - completed,
        "wall_s": round(wall, 2),
        "ramp_s": args.ramp,
        "peak_concurrent": peak_concurrency(spans) if spans else 1,
        "ttfe_ms": {
            "p50": percentile(ttfe, 50),
            "p99": percentile(ttfe, 99),
            "mean": statistics.fmean(ttfe) if ttfe else None,
        },
        "lateness_ms": {
            "p50": percentile(lateness, 50),
            "p99": percentile(lateness, 99),
            "samples": len(lateness),
        },
        "transit_ms": {
            "p50": percentile(transit, 50),
            "p99": percentile(transit, 99),
            "samples": len(transit),
        },
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--expect", type=int, default=0, help="events a full stream has")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--token", default=os.environ.get("QLB_TOKEN", "none"))
    parser.add_argument("--anthropic", action="store_true")
    parser.add_argument("--header-scenario", action="store_true")
    parser.add_argument("--sequential", action="store_true")
    parser.add_argument("--sample-every", type=int, default=1)
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="open the streams over this many seconds [0]"
    )
    args = parser.parse_args(argv)
    import uvloop

    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main(sys.argv[1:])
