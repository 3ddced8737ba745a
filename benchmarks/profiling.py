"""py-spy under wrk load: record a server process while wrk drives one case, keep the
flame graph (SVG) and the raw collapsed stacks, and summarise the hottest functions by
self time and by inclusive time (percent of samples)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from fixtures import BIN, CLIENT_CORE, pinned
from harness import Bench, Case, log, run_case


def py_spy() -> str | None:
    return shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)


def record(
    pid: int, seconds: int, out: Path, fmt: str, *, gil: bool, rate: int = 100
) -> subprocess.Popen[str]:
    executable = py_spy()
    assert executable is not None
    command = [executable, "record", "--pid", str(pid), "--duration", str(seconds),
               "--rate", str(rate), "--nonblocking", "--format", fmt, "-o", str(out)]  # fmt: skip
    if gil:
        command.append("--gil")
    return subprocess.Popen(
        pinned(CLIENT_CORE, command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def profile_case(pid: int, seconds: int, out_dir: Path, name: str, load: Any) -> dict[str, Any]:
    """Record `pid` while `load()` runs wrk for a little longer than `seconds`, with three
    concurrent non-blocking samplers (blocking ones pause ~45 threads and slow the server
    five-fold):

    - `--gil` raw stacks: the Python code holding the GIL, i.e. what the one server core
      spends on Python (SQLite's C code and fsync release the GIL: not in here);
    - all threads, raw stacks, minus idle thread-pool workers (`Condition.wait`): where the
      busy threads are, SQLite included (a runnable thread waiting for the core counts too);
    - a `--gil` flame graph (SVG) to look at.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    gil_raw, all_raw = out_dir / f"{name}-gil.txt", out_dir / f"{name}-threads.txt"
    svg = out_dir / f"{name}-gil.svg"
    samplers = [
        record(pid, seconds, gil_raw, "raw", gil=True),
        record(pid, seconds, all_raw, "raw", gil=False),
        record(pid, seconds, svg, "flamegraph", gil=True),
    ]
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(load=load()))
    worker.start()
    logs = [s.communicate(timeout=seconds + 60)[0] for s in samplers]
    worker.join()
    if not gil_raw.exists() or not all_raw.exists():
        return {"error": "py-spy recorded nothing: " + " | ".join(log[-300:] for log in logs)}
    return {
        "gil": summarise(gil_raw),
        "threads": summarise(all_raw, idle=IDLE_LEAVES),
        "raw": [str(gil_raw), str(all_raw)],
        "flamegraph": str(svg),
        "under_load": result.get("load"),
    }


# Leaves of idle threads: thread-pool workers waiting for work.
IDLE_LEAVES = ("Condition.wait (threading.py)", "Queue.get (queue.py)")


def _function(frame: str) -> str:
    """`handler (quotaledger/server/api.py:71)` -> `handler (quotaledger/server/api.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0] if where else ""
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def summarise(raw: Path, top: int = 25, idle: tuple[str, ...] = ()) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames or frames[-1] in idle:
            continue
        total += count
        self_time[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
        modules[_module(frames[-1])] += count

    def table(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    ours: Counter[str] = Counter(
        {k: v for k, v in inclusive.items() if "(quotaledger/" in k and "quotaledger/cli/" not in k}
    )
    return {
        "samples": total,
        "self_pct": table(self_time),
        "inclusive_pct": table(inclusive),
        "inclusive_quotaledger_pct": table(ours),
        "self_by_package_pct": table(modules),
    }


def _module(function: str) -> str:
    _, _, where = function.partition(" (")
    where = where.rstrip(")")
    parts = where.split("/")
    if not where:
        return function
    if parts[0] == "quotaledger" and len(parts) > 1:
        return "/".join(parts[:2])
    return parts[0]


def profile_cases(bench: Bench, cases: list[Case], out_dir: Path) -> dict[str, Any]:
    """py-spy profiles of the balance, usage and relay servers (and the relay's ceiling),
    each under its wrk case."""
    if py_spy() is None:
        return {"skipped": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    profiles: dict[str, Any] = {}
    seconds = 5 if bench.config.quick else 10
    for case in cases:
        if case.name not in ("balance", "usage", "relay", "relay-ceiling", "relay-pg-many"):
            continue
        log(f"profiling {case.name} with py-spy for {seconds} s under wrk")
        pid = bench.servers[case.server].worker_pid  # Granian answers in its worker
        profiles[case.name] = profile_case(
            pid,
            seconds,
            out_dir,
            f"profile-{case.name}",
            lambda c=case: run_case(bench, c, seconds + 2).as_dict(),
        )
    return profiles
