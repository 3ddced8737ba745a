"""quotaledger benchmarks: the balance path, the ledger, the CLI and the watcher, each against
its ceiling, side by side in one run on this machine.

    .venv/bin/python benchmarks/run.py [--quick] [--profile] [--duration S] [--rounds N]
        [--only balance,usage,size,cli,watch,relay,relay-streams]

Servers (`quotaledger serve --workers 1` and the bare Starlette ceiling) run pinned to core 0,
wrk and the clients to core 1. Every wrk case runs once per round, rounds interleave the
cases so that the machine's noise hits them alike, and the figure is the median over rounds.
Prints a table and writes benchmarks/results/latest.json. See benchmarks/README.md.

Each benchmark is a module (see `harness`); this runner calls the chosen ones' steps in turn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import balancebench
import clibench
import fixtures
import relaybench
import sizebench
import usagebench
import watchbench
from fixtures import ROOT, ceiling_settings
from harness import (
    GROUPS,
    Bench,
    Case,
    Config,
    ceiling_cases,
    ceiling_rows,
    log,
    median_of,
    run_rounds,
    setup_ceiling,
    setup_small,
)
from profiling import profile_cases
from report import machine, print_ledger, print_profiles, print_table

RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS: dict[str, ModuleType] = {
    "balance": balancebench,
    "usage": usagebench,
    "size": sizebench,
    "cli": clibench,
    "watch": watchbench,
    "relay": relaybench,
    "relay-streams": relaybench,  # the streams part of `relay` alone
}
"""In the order of GROUPS: their cases run, and their rows print, in this order."""


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="~1 minute: 1 round of 2 s, 100k users"
    )
    parser.add_argument(
        "--only", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}"
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run [5; quick 2]")
    parser.add_argument("--rounds", type=int, help="runs per case, median reported [3; quick 1]")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections [64]")
    parser.add_argument(
        "--large-users", type=int, help="users in the large database [1,000,000; quick 100,000]"
    )
    parser.add_argument(
        "--src",
        type=Path,
        help="import quotaledger from this directory in every measured process, e.g. "
        "an older commit exported with `git archive REV src | tar -x -C /tmp/old` "
        "(then --src /tmp/old/src)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also record py-spy profiles of the balance and usage paths",
    )
    args = parser.parse_args(argv)
    groups = tuple(g.strip() for g in args.only.split(",") if g.strip())
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; pick from {GROUPS}")
    quick = args.quick
    if args.src is not None:
        if not (args.src / "quotaledger" / "__init__.py").exists():
            parser.error(f"--src {args.src}: no quotaledger package in there")
        fixtures.SRC_OVERRIDE[:] = [str(args.src.resolve())]
    return Config(
        quick=quick,
        groups=groups,
        duration=args.duration or (2.0 if quick else 5.0),
        rounds=args.rounds or (1 if quick else 3),
        connections=args.connections,
        large_users=args.large_users or (100_000 if quick else 1_000_000),
        cli_runs=5 if quick else 15,
        watch_runs=1 if quick else 3,
        profile=args.profile,
        warmup=1.0,
    )


def exclusive() -> Any:
    """One benchmark run at a time on this machine: two runs on the same two cores would
    measure each other. Waits for the other run to finish (an flock, freed on exit)."""
    import fcntl

    lock = (Path(tempfile.gettempdir()) / "quotaledger-benchmarks.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        log(f"another benchmark run is under way ({lock.read().strip()}); waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}")
    lock.flush()
    return lock


def run_benchmarks(bench: Bench, chosen: list[ModuleType]) -> tuple[list[Case], dict[str, Any]]:
    """Set up, run the wrk rounds, then what is not wrk: the cases and the extra figures."""
    cfg, extra = bench.config, {}
    if any(module is not relaybench for module in chosen):  # the relay has its own databases
        setup_small(bench)
    for module in _with(chosen, "setup"):
        module.setup(bench)
    setup_ceiling(bench)
    cases = ceiling_cases(bench) + [c for m in _with(chosen, "cases") for c in m.cases(bench)]
    if cases:
        log(
            f"{len(cases)} wrk cases x {cfg.rounds} round(s) of {cfg.duration:g} s, "
            f"{cfg.connections} connections"
        )
        run_rounds(bench, cases)
    if cfg.profile:
        extra["profiles"] = profile_cases(bench, cases, RESULTS)
    for module in _with(chosen, "measure"):
        key, figures = module.measure(bench, cases)
        extra[key] = figures
    return cases, extra


def _with(modules: list[ModuleType], step: str) -> list[ModuleType]:
    return [module for module in modules if hasattr(module, step)]


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    lock = exclusive()  # noqa: F841 (held until the process exits)
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="quotaledger-bench-"))
    bench = Bench(cfg, workdir)
    chosen = list(dict.fromkeys(m for g, m in BENCHMARKS.items() if g in cfg.groups))
    cases: list[Case] = []
    try:
        cases, extra = run_benchmarks(bench, chosen)
    finally:
        bench.stop()
    summary = {c.name: median_of(c) for c in cases if c.runs}
    rows = ceiling_rows(summary) + [r for m in chosen for r in m.rows(bench, summary, extra)]
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "benchmarks/run.py " + " ".join(argv),
        "machine": machine(),
        "settings": settings(bench),
        "rows": rows,
        "cases": summary,
        **extra,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    out = write_results(result, cfg.quick)
    print_report(result, rows, extra, cfg)
    print(f"\nresults: {out.relative_to(ROOT)}  ({result['elapsed_s']} s)")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def settings(bench: Bench) -> dict[str, Any]:
    cfg = bench.config
    return {
        "quick": cfg.quick,
        "duration_s": cfg.duration,
        "rounds": cfg.rounds,
        "connections": cfg.connections,
        "large_users": cfg.large_users,
        "server_core": "0",
        "client_core": "1",
        "wrk_threads": 1,
        "balance_rate_limit": "off (QUOTALEDGER_RATE_LIMIT_BALANCE=off)",
        "limited_rate_limit": balancebench.LIMITED_RATE,
        "accept_encoding": "gzip",
        "ceiling_engine": (
            ceiling_settings(bench.servers["ceiling"]) if "ceiling" in bench.servers else None
        ),
    }


def write_results(result: dict[str, Any], quick: bool) -> Path:
    """benchmarks/results/latest.json, and a timestamped copy."""
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    shutil.copy(out, RESULTS / f"run-{stamp}{'-quick' if quick else ''}.json")
    return out


def print_report(
    result: dict[str, Any], rows: list[dict[str, Any]], extra: dict[str, Any], cfg: Config
) -> None:
    print()
    tree = result["machine"]
    dirty = (
        f" + uncommitted src changes {tree['src_diff_sha256']}" if tree["src_changed_files"] else ""
    )
    print(
        f"quotaledger benchmarks — {result['date']} — commit {tree['commit']}{dirty} — "
        f"{tree['cores']} cores ({tree['cpu']}), {'QUICK' if cfg.quick else 'full'}: "
        f"median of {cfg.rounds} x {cfg.duration:g} s, {cfg.connections} connections"
    )
    print_table(rows)
    if "ledger" in extra:
        print_ledger(extra["ledger"])
    if "profiles" in extra:
        print_profiles(extra["profiles"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
