"""quotaledger benchmarks: the balance path, the ledger, the CLI and the watcher, each against
its ceiling, side by side in one run on this machine.

    .venv/bin/python benchmarks/run.py [--quick] [--only balance,usage,size,cli,watch]
                                       [--profile] [--duration S] [--rounds N]

Servers (`quotaledger serve --workers 1` and the bare Starlette ceiling) run pinned to core 0,
wrk and the clients to core 1. Every wrk case runs once per round, rounds interleave the
cases so that the machine's noise hits them alike, and the figure is the median over rounds.
Prints a table and writes benchmarks/results/latest.json. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fixtures
import httpx
from clibench import bench_cli
from fixtures import (
    ROOT,
    LoadedDatabase,
    Server,
    ceiling_settings,
    ledger_check,
    load_users,
    set_price,
    start_ceiling,
    start_quotaledger,
    username,
)
from loadgen import WrkResult, run_wrk, wrk_version
from watchbench import bench_watch, monitor_available

from quotaledger import tokens

RESULTS = ROOT / "benchmarks" / "results"
GROUPS = ("balance", "usage", "size", "cli", "watch")
LIMITED_RATE = "1/hour"  # the 429 server: one balance query per token per hour
USAGE_USERS = 100


@dataclass
class Case:
    """One wrk load: which server, path, Lua script, environment and expected status."""

    name: str
    label: str
    server: str
    path: str
    script: str
    expect: int
    env: dict[str, str] = field(default_factory=dict)
    connections: int | None = None
    fresh_env: Callable[[], dict[str, str]] | None = None  # per run (unique request_ids)
    runs: list[WrkResult] = field(default_factory=list)

    def run_env(self) -> dict[str, str]:
        return {**self.env, **(self.fresh_env() if self.fresh_env else {})}


@dataclass
class Config:
    quick: bool
    groups: tuple[str, ...]
    duration: float
    rounds: int
    connections: int
    large_users: int
    cli_runs: int
    watch_runs: int
    profile: bool
    warmup: float


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


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup


@dataclass
class Bench:
    config: Config
    workdir: Path
    servers: dict[str, Server] = field(default_factory=dict)
    databases: dict[str, LoadedDatabase] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    balance_user: str = ""
    notes: list[str] = field(default_factory=list)

    def wants(self, *groups: str) -> bool:
        return any(g in self.config.groups for g in groups)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def setup(bench: Bench) -> None:
    work, cfg = bench.workdir, bench.config
    if bench.wants("balance", "cli", "watch", "size", "usage"):
        log("loading 1,000 users (small database)")
        # The first 100 accounts are low ($10): the watcher alerts for them.
        small = load_users(work / "small.db", 1000, probes=1000, low_probes=100)
        bench.databases["small"] = small
        bench.balance_user = username(500)
        write_tokens(work / "small-tokens.txt", small)
        bench.files["small_tokens"] = work / "small-tokens.txt"
        bench.servers["balance"] = start_quotaledger("balance", small.url, work)
    if bench.wants("balance"):
        shutil.copy(work / "small.db", work / "limited.db")
        bench.servers["limited"] = start_quotaledger(
            "limited", f"sqlite:///{work / 'limited.db'}", work, rate_limit_balance=LIMITED_RATE
        )
    if bench.wants("usage"):
        log(f"loading {USAGE_USERS} users with a price (usage database)")
        usage = load_users(work / "usage.db", USAGE_USERS, probes=USAGE_USERS, probe_quota=10**15)
        set_price(usage)
        bench.databases["usage"] = usage
        bench.servers["usage"] = start_quotaledger("usage", usage.url, work)
    if bench.wants("size"):
        log(f"bulk-loading {cfg.large_users:,} users (large database)")
        started = time.monotonic()
        large = load_users(work / "large.db", cfg.large_users, probes=1000)
        log(f"  loaded in {time.monotonic() - started:.1f} s")
        bench.databases["large"] = large
        write_tokens(work / "large-tokens.txt", large)
        bench.files["large_tokens"] = work / "large-tokens.txt"
        bench.servers["large"] = start_quotaledger("large", large.url, work)
    if bench.wants("balance", "usage"):
        body = balance_body(bench)
        bench.servers["ceiling"] = start_ceiling(body, work)


def write_tokens(path: Path, database: LoadedDatabase) -> None:
    path.write_text("\n".join(database.probe_tokens.values()) + "\n")


def balance_body(bench: Bench) -> bytes:
    """The exact bytes `GET /api/user/self` answers (uncompressed), for the ceiling."""
    token = bench.databases["small"].probe_tokens[bench.balance_user]
    reply = httpx.get(
        bench.servers["balance"].base_url + "/api/user/self",
        headers={"Authorization": token, "Accept-Encoding": "identity"},
        timeout=10,
    )
    reply.raise_for_status()
    return reply.content


def make_cases(bench: Bench) -> list[Case]:
    cases: list[Case] = []
    if "small" in bench.databases:
        token = bench.databases["small"].probe_tokens[bench.balance_user]
    if bench.wants("balance", "usage"):
        cases.append(
            Case(
                "ceiling",
                "ceiling: bare Starlette route",
                "ceiling",
                "/api/user/self",
                "get.lua",
                200,
                {"QLB_TOKEN": token},
            )
        )
    if bench.wants("balance"):
        cases += [
            Case(
                "balance",
                "GET /api/user/self (valid token)",
                "balance",
                "/api/user/self",
                "get.lua",
                200,
                {"QLB_TOKEN": token},
            ),
            Case(
                "unauth_unknown",
                "401: well-formed unknown token",
                "balance",
                "/api/user/self",
                "get.lua",
                401,
                {"QLB_TOKEN": tokens.generate_token()},
            ),
            Case(
                "unauth_malformed",
                "401: malformed token",
                "balance",
                "/api/user/self",
                "get.lua",
                401,
                {"QLB_TOKEN": "ql_this-is-not-a-token"},
            ),
            Case(
                "limited",
                f"429: over the limit ({LIMITED_RATE})",
                "limited",
                "/api/user/self",
                "get.lua",
                429,
                {"QLB_TOKEN": token},
            ),
        ]
    if bench.wants("usage"):
        admin = bench.databases["usage"].admin_token
        cases.append(
            Case(
                "usage",
                "POST /api/usage (unique request_ids)",
                "usage",
                "/api/usage",
                "usage.lua",
                200,
                {"QLB_TOKEN": admin, "QLB_USERS": str(USAGE_USERS)},
                fresh_env=lambda: {"QLB_RUN_ID": uuid.uuid4().hex[:12]},
            )
        )
    if bench.wants("size"):
        cases += [
            Case(
                "size_small",
                "GET /api/user/self, 1,000 users (1,000 tokens in turn)",
                "balance",
                "/api/user/self",
                "rotate.lua",
                200,
                {"QLB_TOKENS_FILE": str(bench.files["small_tokens"])},
            ),
            Case(
                "size_large",
                f"GET /api/user/self, {bench.config.large_users:,} users (1,000 tokens in turn)",
                "large",
                "/api/user/self",
                "rotate.lua",
                200,
                {"QLB_TOKENS_FILE": str(bench.files["large_tokens"])},
            ),
        ]
    if bench.wants("watch") and monitor_available() is None:
        cases.append(
            Case(
                "watch_ref",
                "wrk: 1,000 accounts' tokens in turn, 4 connections",
                "balance",
                "/api/user/self",
                "rotate.lua",
                200,
                {"QLB_TOKENS_FILE": str(bench.files["small_tokens"])},
                connections=4,
            )
        )
    return cases


def check_case(bench: Bench, case: Case) -> None:
    """One request as the Lua script would send it: the expected status, or stop."""
    env = case.run_env()
    url = bench.servers[case.server].base_url + case.path
    if case.script == "usage.lua":
        reply = httpx.post(
            url,
            headers={"Authorization": env["QLB_TOKEN"]},
            timeout=10,
            json={
                "username": username(0),
                "model": "bench-model",
                "request_id": f"check-{uuid.uuid4()}",
                "prompt_tokens": 1200,
                "completion_tokens": 300,
            },
        )
    else:
        token = env.get("QLB_TOKEN")
        if case.script == "rotate.lua":
            token = Path(env["QLB_TOKENS_FILE"]).read_text().split()[0]
        reply = httpx.get(url, headers={"Authorization": token} if token else {}, timeout=10)
        if case.expect == 429 and reply.status_code == 200:  # spend the tiny budget first
            reply = httpx.get(url, headers={"Authorization": token or ""}, timeout=10)
    if reply.status_code != case.expect:
        raise RuntimeError(f"{case.name}: expected {case.expect}, got {reply.status_code}")


# ---------------------------------------------------------------- running


def run_case(bench: Bench, case: Case, duration: float) -> WrkResult:
    return run_wrk(
        bench.servers[case.server].base_url + case.path,
        case.script,
        duration=duration,
        connections=case.connections or bench.config.connections,
        env=case.run_env(),
    )


def run_rounds(bench: Bench, cases: list[Case]) -> None:
    cfg = bench.config
    for case in cases:
        check_case(bench, case)
        run_case(bench, case, cfg.warmup)  # warm caches, pools and the price cache
    for round_number in range(cfg.rounds):
        for case in cases:
            result = run_case(bench, case, cfg.duration)
            case.runs.append(result)
            log(
                f"round {round_number + 1}/{cfg.rounds} {case.name:17s} "
                f"{result.requests_per_s:9.0f} req/s  p99 {result.p99_ms:7.2f} ms"
                + (f"  non-2xx {result.non_2xx}" if result.non_2xx else "")
            )


def median_of(case: Case) -> dict[str, Any]:
    expected_all_errors = case.expect >= 400
    status_ok = all(
        (r.non_2xx == r.requests) if expected_all_errors else (r.non_2xx == 0) for r in case.runs
    )
    return {
        "label": case.label,
        "requests_per_s": statistics.median(r.requests_per_s for r in case.runs),
        "p50_ms": statistics.median(r.p50_ms for r in case.runs),
        "p99_ms": statistics.median(r.p99_ms for r in case.runs),
        "connections": case.runs[0].connections,
        "expected_status": case.expect,
        "statuses_as_expected": status_ok,
        "socket_errors": sum(r.socket_errors for r in case.runs),
        "runs": [r.as_dict() for r in case.runs],
    }


def run_profiles(bench: Bench, cases: list[Case], out_dir: Path) -> dict[str, Any]:
    from profiling import profile_case, py_spy

    if py_spy() is None:
        return {"skipped": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    profiles: dict[str, Any] = {}
    seconds = 5 if bench.config.quick else 10
    for case in cases:
        if case.name not in ("balance", "usage"):
            continue
        log(f"profiling {case.name} with py-spy for {seconds} s under wrk")
        pid = bench.servers[case.server].pid
        profiles[case.name] = profile_case(
            pid,
            seconds,
            out_dir,
            f"profile-{case.name}",
            lambda c=case: run_case(bench, c, seconds + 2).as_dict(),
        )
    return profiles


# ---------------------------------------------------------------- report


def ratio_row(
    metric: str,
    figure: float | None,
    unit: str,
    ceiling: float | None,
    target: str,
    passed: bool | None,
    ratio: float | None = None,
    note: str = "",
    ceiling_unit: str | None = None,
) -> dict[str, Any]:
    if ratio is None and figure is not None and ceiling:
        ratio = figure / ceiling
    return {
        "ceiling_unit": unit if ceiling_unit is None else ceiling_unit,
        "metric": metric,
        "figure": figure,
        "unit": unit,
        "ceiling": ceiling,
        "ratio": ratio,
        "target": target,
        "result": _verdict(passed),
        "note": note,
    }


def _verdict(passed: bool | None) -> str:
    return "—" if passed is None else ("PASS" if passed else "FAIL")


def summarise(bench: Bench, cases: dict[str, dict[str, Any]], extra: dict[str, Any]) -> list[dict]:
    rows: list[dict[str, Any]] = []
    ceiling = cases.get("ceiling")
    ceil_rps = ceiling["requests_per_s"] if ceiling else None
    if ceiling:
        rows.append(
            ratio_row(
                "ceiling: bare Starlette GET",
                ceil_rps,
                "req/s",
                None,
                "",
                None,
                note=f"p99 {ceiling['p99_ms']:.2f} ms",
            )
        )

    def vs_ceiling(name: str, metric: str, target: float, unit: str = "req/s") -> None:
        if name not in cases:
            return
        case = cases[name]
        rps = case["requests_per_s"]
        ratio = rps / ceil_rps if ceil_rps else None
        note = f"p99 {case['p99_ms']:.2f} ms"
        paired = round_ratios(case, ceiling)
        if len(paired) > 1:
            case["round_ratios"] = paired
            note += f"; per round {min(paired):.2f}-{max(paired):.2f}x"
        if not case["statuses_as_expected"]:
            note += f"; UNEXPECTED STATUSES (wanted {case['expected_status']})"
        if case["socket_errors"]:
            note += f"; {case['socket_errors']} socket errors"
        passed = None if ratio is None else ratio >= target and case["statuses_as_expected"]
        rows.append(
            ratio_row(metric, rps, unit, ceil_rps, f"≥ {target:g}x", passed, ratio, note, "req/s")
        )

    vs_ceiling("balance", "GET /api/user/self", 0.5)
    vs_ceiling("usage", "POST /api/usage charges", 0.25, "charges/s")
    vs_ceiling("unauth_unknown", "401 well-formed unknown token", 0.8)
    vs_ceiling("unauth_malformed", "401 malformed token", 0.8)
    vs_ceiling("limited", f"429 over the limit ({LIMITED_RATE})", 0.8)
    if "size_small" in cases and "size_large" in cases:
        small, large = cases["size_small"], cases["size_large"]
        ratio = large["requests_per_s"] / small["requests_per_s"]
        rows.append(
            ratio_row(
                f"GET self, {bench.config.large_users:,} vs 1,000 users",
                large["requests_per_s"],
                "req/s",
                small["requests_per_s"],
                "≥ 0.9x",
                ratio >= 0.9,
                ratio,
                f"p99 {large['p99_ms']:.2f} vs {small['p99_ms']:.2f} ms"
                + ("" if bench.config.large_users >= 1_000_000 else " (QUICK: not 1,000,000)"),
            )
        )
    if "cli" in extra:
        cli = extra["cli"]
        if "skipped" in cli:
            rows.append(
                ratio_row(
                    "quotaledger balance", None, "", None, "≤ 1.5x", None, note=cli["skipped"]
                )
            )
        else:
            med = cli["median_s"]
            rows.append(
                ratio_row(
                    "quotaledger balance wall time",
                    med["quotaledger_balance"] * 1000,
                    "ms",
                    med["httpx_one_liner"] * 1000,
                    "≤ 1.5x",
                    cli["ratio"] <= 1.5,
                    cli["ratio"],
                    f"vs httpx one-liner; `python -c pass` {med['python_startup'] * 1000:.0f} ms",
                )
            )
    if "watch" in extra:
        rows += watch_rows(extra["watch"], cases.get("watch_ref"))
    return rows


def round_ratios(case: dict[str, Any], ceiling: dict[str, Any] | None) -> list[float]:
    """The case over the ceiling in each round (the runs of a round are seconds apart):
    their spread shows how much the machine's noise moved the ratio."""
    if ceiling is None or len(case["runs"]) != len(ceiling["runs"]):
        return []
    return [
        round(c["requests_per_s"] / r["requests_per_s"], 3)
        for c, r in zip(case["runs"], ceiling["runs"], strict=True)
        if r["requests_per_s"]
    ]


def watch_rows(watch: dict[str, Any], ref: dict[str, Any] | None) -> list[dict[str, Any]]:
    if "skipped" in watch:
        return [
            ratio_row(
                "watch --once, 1,000 accounts",
                None,
                "",
                None,
                "≤ 2x",
                None,
                note="skipped: " + watch["skipped"],
            )
        ]
    reference = 1000 / ref["requests_per_s"] * 1000 if ref else None  # ms for 1,000 requests
    rows = []
    cli_ms = watch["cli_wall_s"] * 1000
    first = watch["cli_runs"][0]
    broken = [
        r
        for r in watch["cli_runs"]
        if r["exit_code"] not in (0, 1) or r["requests"]["/api/user/self"] < watch["accounts"]
    ]
    if broken:  # it did not poll every account: no figure to speak of
        last_line = (broken[0]["output_tail"].strip().splitlines() or ["no output"])[-1]
        row = ratio_row("watch --once, 1,000 accounts", None, "", None, "≤ 2x", None)
        row["result"] = "ERROR"
        row["note"] = (
            f"exit {broken[0]['exit_code']}, {broken[0]['requests']['/api/user/self']} "
            f"balance requests: {last_line[:120]}"
        )
        return [row]
    note = (
        f"median of {len(watch['cli_runs'])} run(s); "
        f"{first['requests']['/api/user/self']} balance + {first['requests']['/api/status']} "
        f"status requests, {first['notifications']} notification(s), exit "
        f"{first['exit_code']}"
    )
    # The target is the issue's "one cycle over 1,000 accounts": the poll round. The whole
    # process (Python, imports, the config's Apprise URL check, then the round) is shown
    # beside it, for scale, without a verdict.
    cycles_ok = all(r.get("polls_ok") == watch["accounts"] for r in watch["cycle_runs"])
    if watch.get("cycle_s") is not None and cycles_ok:
        cycle_ms = watch["cycle_s"] * 1000
        start = watch.get("startup_s") or 0
        rows.append(
            ratio_row(
                "watch: one cycle over 1,000 accounts",
                cycle_ms,
                "ms",
                reference,
                "≤ 2x",
                cycle_ms / reference <= 2 if reference else None,
                note=f"the poll round; start-up before it (imports, config, clients) "
                f"{start * 1000:.0f} ms",
            )
        )
    rows.append(
        ratio_row(
            "  the whole watch --once process",
            cli_ms,
            "ms",
            reference,
            "",
            None,
            note=note,
        )
    )
    rss_mb = watch["cli_peak_rss_bytes"] / 2**20
    rows.append(ratio_row("watch --once peak RSS", rss_mb, "MB", None, "< 150 MB", rss_mb < 150))
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    def fmt(value: float | None, unit: str = "") -> str:
        if value is None:
            return "—"
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
        return f"{text} {unit}".strip()

    header = ("metric", "figure", "ceiling", "ratio", "target", "result", "notes")
    table = [header] + [
        (
            r["metric"],
            fmt(r["figure"], r["unit"]),
            fmt(r["ceiling"], r["ceiling_unit"]),
            "—" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            r["target"],
            r["result"],
            r["note"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for index, row in enumerate(table):
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
        print(" | ".join(cells) + " | " + str(row[-1]))
        if index == 0:
            print("-+-".join("-" * w for w in widths) + "-+-" + "-" * 20)


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": wrk_version(),
        **source_tree(),
    }


def source_tree() -> dict[str, Any]:
    """Which code was measured: the commit, and a digest of uncommitted changes under src/
    (the server may be edited while benchmarks run: compare the digest across runs)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    diff = git("diff", "HEAD", "--", "src")
    changed = git("diff", "HEAD", "--name-only", "--", "src").split()
    if fixtures.SRC_OVERRIDE:
        return {
            "src_override": fixtures.SRC_OVERRIDE[0],
            "commit": "(--src)",
            "src_changed_files": [],
            "src_diff_sha256": None,
        }
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_changed_files": changed,
        "src_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


# ---------------------------------------------------------------- main


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


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    lock = exclusive()  # noqa: F841 (held until the process exits)
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="quotaledger-bench-"))
    bench = Bench(cfg, workdir)
    extra: dict[str, Any] = {}
    cases: list[Case] = []
    try:
        setup(bench)
        cases = make_cases(bench)
        if cases:
            log(
                f"{len(cases)} wrk cases x {cfg.rounds} round(s) of {cfg.duration:g} s, "
                f"{cfg.connections} connections"
            )
            run_rounds(bench, cases)
        if bench.wants("cli"):
            log(f"CLI: {cfg.cli_runs} runs each")
            token = bench.databases["small"].probe_tokens[bench.balance_user]
            extra["cli"] = bench_cli(bench.servers["balance"].base_url, token, cfg.cli_runs)
        if bench.wants("watch"):
            why_not = monitor_available()
            if why_not:
                extra["watch"] = {"skipped": why_not}
            else:
                log(f"watcher: {cfg.watch_runs} run(s) over 1,000 accounts")
                small = bench.databases["small"]
                extra["watch"] = bench_watch(
                    workdir,
                    bench.servers["balance"].base_url,
                    bench.servers["balance"].log,
                    small.probe_tokens,
                    cfg.watch_runs,
                )
        if cfg.profile:
            extra["profiles"] = run_profiles(bench, cases, RESULTS)
        if "usage" in bench.databases:
            usage_case = next(c for c in cases if c.name == "usage")
            check = ledger_check(bench.databases["usage"].path)
            acknowledged = sum(r.requests - r.non_2xx for r in usage_case.runs)
            check["acknowledged_in_measured_runs"] = acknowledged
            check["acknowledged_le_committed"] = acknowledged <= check["usage_rows"]
            extra["ledger"] = check
    finally:
        bench.stop()
    summary = {c.name: median_of(c) for c in cases if c.runs}
    rows = summarise(bench, summary, extra)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "benchmarks/run.py " + " ".join(argv),
        "machine": machine(),
        "settings": {
            "quick": cfg.quick,
            "duration_s": cfg.duration,
            "rounds": cfg.rounds,
            "connections": cfg.connections,
            "large_users": cfg.large_users,
            "server_core": "0",
            "client_core": "1",
            "wrk_threads": 1,
            "balance_rate_limit": "off (QUOTALEDGER_RATE_LIMIT_BALANCE=off)",
            "limited_rate_limit": LIMITED_RATE,
            "accept_encoding": "gzip",
            "ceiling_uvicorn_settings": (
                ceiling_settings(bench.servers["ceiling"]) if "ceiling" in bench.servers else None
            ),
        },
        "rows": rows,
        "cases": summary,
        **extra,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    shutil.copy(out, RESULTS / f"run-{stamp}{'-quick' if cfg.quick else ''}.json")
    print()
    tree = result["machine"]
    dirty = (
        f" + uncommitted src changes {tree['src_diff_sha256']}" if tree["src_changed_files"] else ""
    )
    print(
        f"quotaledger benchmarks — {result['date']} — commit {tree['commit']}{dirty} — "
        f"{result['machine']['cores']} cores "
        f"({result['machine']['cpu']}), {'QUICK' if cfg.quick else 'full'}: "
        f"median of {cfg.rounds} x {cfg.duration:g} s, {cfg.connections} connections"
    )
    print_table(rows)
    if "ledger" in extra:
        ledger = extra["ledger"]
        print(
            f"\nledger after the usage runs: invariant "
            f"{'OK' if ledger['invariant_ok'] else 'BROKEN'}, "
            f"{ledger['usage_rows']:,} usage rows committed, "
            f"{ledger['acknowledged_in_measured_runs']:,} acknowledged in measured runs"
        )
    if "profiles" in extra:
        print_profiles(extra["profiles"])
    print(f"\nresults: {out.relative_to(ROOT)}  ({result['elapsed_s']} s)")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def print_profiles(profiles: dict[str, Any]) -> None:
    for name, profile in profiles.items():
        if not isinstance(profile, dict) or "gil" not in profile:
            print(f"\nprofile {name}: {profile}")
            continue
        print(f"\nprofile {name} (py-spy; flame graph {profile['flamegraph']})")
        for kind, title in (("gil", "holding the GIL"), ("threads", "busy threads")):
            part = profile[kind]
            print(f"  {title}, {part['samples']} samples — self time by package:")
            for function, pct in part["self_by_package_pct"][:10]:
                print(f"    {pct:5.1f}%  {function}")
            print(f"  {title} — self time by function:")
            for function, pct in part["self_pct"][:15]:
                print(f"    {pct:5.1f}%  {function}")
            print(f"  {title} — inclusive, quotaledger functions:")
            for function, pct in part["inclusive_quotaledger_pct"][:12]:
                print(f"    {pct:5.1f}%  {function}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
