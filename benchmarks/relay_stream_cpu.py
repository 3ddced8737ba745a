"""The relay's CPU per streamed event and per stream start, old tree against new, interleaved.

    PYTHONPATH=src .venv/bin/python benchmarks/relay_stream_cpu.py \
        --src old=/tmp/old/src --src new=src [--rounds 4] [--streams 200] [--events 200] \
        [--seconds 5] [--burst 1000]

One fake upstream (pinned to the client core with the stream client) and one relay per tree
(`quotaledger serve --workers 1` pinned to the server core, each on its own copy of one
provisioned SQLite file). Each round runs, for every tree in turn, N concurrent streams of E
events spread over S seconds, and reads the relay's CPU time (utime + stime, from
/proc/PID/stat) before and after: CPU per event = the difference / (N x E). With --burst B,
each round also opens B streams of 4 events at once and reports the CPU per stream start
(admission, reservation, upstream open, settlement, and the 4 events). Wall time on a shared
machine is noise; CPU time of the measured process is much steadier, and alternating the
trees puts the same noise on both.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fixtures import (
    QUOTALEDGER,
    Server,
    _serve_flags,
    _spawn,
    _wait_ready,
    clean_env,
    free_port,
    migrate,
    sqlite_url,
)
from relaybench import (
    SECRET_KEY,
    provision,
    run_queue_wait,
    script,
    start_passthrough,
    start_upstream,
    stream_load,
    warm_up,
)


def start_tree(name: str, src: Path, database: Path, work: Path) -> Server:
    env = clean_env(QUOTALEDGER_SECRET_KEY=SECRET_KEY)
    env["PYTHONPATH"] = str(src.resolve())
    port = free_port()
    command = [QUOTALEDGER, "serve", *_serve_flags(port, sqlite_url(database))]
    return _wait_ready(_spawn(name, command, env, work, port), "/healthz")


def one_load(
    upstream: str,
    server: Server,
    key: str,
    streams: int,
    events: int,
    seconds: float,
    ramp: float = 0.0,
) -> tuple[float, dict[str, Any]]:
    script(upstream, "/v1/chat/completions", streams, events - 4, seconds)
    before, waited = server.cpu_seconds(), run_queue_wait(server.worker_pid)
    result = stream_load(
        server.base_url + "/v1/chat/completions",
        key,
        streams=streams,
        events=events,
        seconds=seconds,
        ramp=ramp,
    )
    result["run_queue_wait_s"] = round(run_queue_wait(server.worker_pid) - waited, 2)
    return server.cpu_seconds() - before, result


def _spy(folder: Path | None, server: Server, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy (next to this venv's python) on the relay for the round, in speedscope
    format (--gil: what holds the interpreter; the server is one thread)."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    out = folder / f"{name}.txt"
    command = [str(spy), "record", "--pid", str(server.worker_pid), "--format", "raw"]
    command += ["-o", str(out), "--rate", "250", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--ramp", type=float, default=0.0, help="open the streams over S s")
    parser.add_argument("--burst", type=int, default=0, help="streams opened at once")
    parser.add_argument(
        "--ceiling", action="store_true", help="measure the bare pass-through too (this tree)"
    )
    parser.add_argument("--py-spy", type=Path, help="record the first round's profiles here")
    args = parser.parse_args(argv)
    trees = [(n, Path(d)) for n, d in (s.split("=", 1) for s in args.src)]
    work = Path(tempfile.mkdtemp(prefix="quotaledger-streamcpu-"))
    servers: dict[str, Server] = {}
    upstream = start_upstream(work)
    try:
        base = work / "base.db"
        migrate(base)
        key = provision(sqlite_url(base), upstream.base_url)
        for name, src in trees:
            database = work / f"{name}.db"
            shutil.copy(base, database)
            servers[name] = start_tree(name, src, database, work)
            warm_up(servers[name], key)
        keys = {name: key for name, _ in trees}
        if args.ceiling:
            servers["ceiling"] = start_passthrough(upstream.base_url, work)
            trees.append(("ceiling", Path("src")))
            keys["ceiling"] = "none"
        per_event: dict[str, list[float]] = {n: [] for n, _ in trees}
        per_start: dict[str, list[float]] = {n: [] for n, _ in trees}
        for round_ in range(args.rounds):
            order = trees if round_ % 2 == 0 else trees[::-1]
            for name, _ in order:
                server = servers[name]
                spy = _spy(args.py_spy, server, name) if round_ == 0 else None
                cpu, result = one_load(
                    upstream.base_url,
                    server,
                    keys[name],
                    args.streams,
                    args.events,
                    args.seconds,
                    args.ramp,
                )
                us = cpu / (args.streams * args.events) * 1e6
                per_event[name].append(us)
                line = f"round {round_} {name}: {us:.1f} us CPU/event"
                line += f" ({result['completed']}/{args.streams} completed"
                transit = result["transit_ms"]
                if transit["samples"]:
                    line += f", transit p50 {transit['p50']:.1f} p99 {transit['p99']:.1f} ms"
                line += f", TTFT p50 {result['ttfe_ms']['p50']:.0f} ms"
                line += f", waited for a core {result['run_queue_wait_s']:.1f} s)"
                if args.burst:
                    spy = _spy(args.py_spy, server, name + "-burst") if round_ == 0 else None
                    cpu, result = one_load(
                        upstream.base_url, server, keys[name], args.burst, 4, 0.0
                    )
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait()
                    per_start[name].append(cpu / args.burst * 1e6)
                    line += (
                        f"; burst {cpu / args.burst * 1e6:.0f} us CPU/stream,"
                        f" TTFT p50 {result['ttfe_ms']['p50']:.0f} ms"
                        f" ({result['completed']}/{args.burst})"
                    )
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait()
                print(line, file=sys.stderr, flush=True)
        summary = {
            name: {
                "cpu_us_per_event_median": statistics.median(per_event[name]),
                "cpu_us_per_event": [round(v, 1) for v in per_event[name]],
                **(
                    {
                        "cpu_us_per_stream_start_median": statistics.median(per_start[name]),
                        "cpu_us_per_stream_start": [round(v) for v in per_start[name]],
                    }
                    if per_start[name]
                    else {}
                ),
            }
            for name, _ in trees
        }
        print(json.dumps(summary, indent=1))
    finally:
        for server in servers.values():
            server.stop()
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
