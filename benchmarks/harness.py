"""What the wrk benchmarks share: the run's settings (`Config`), its servers and databases
(`Bench`), a wrk load (`Case`) run in interleaved rounds, and the rows of the report.

Each benchmark is a module (`balancebench`, `usagebench`, `sizebench`, `clibench`,
`watchbench`) with up to four steps, which `run.py` calls in turn for the chosen ones:
`setup(bench)` starts what it needs, `cases(bench)` lists its wrk loads, `measure(bench,
cases)` does what is not wrk (after the rounds), and `rows(bench, summary, extra)` gives its
lines of the table.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fixtures import LoadedDatabase, Server, load_users, start_ceiling, start_quotaledger, username
from loadgen import WrkResult, run_wrk

GROUPS = ("balance", "usage", "size", "cli", "watch", "relay", "relay-streams")


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
    also: str | None = None  # a second server: the load is split between the two
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


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


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

    @property
    def balance_token(self) -> str:
        """The token of the account every single-token load asks for."""
        return self.databases["small"].probe_tokens[self.balance_user]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


# ---------------------------------------------------------------- shared setup


def setup_small(bench: Bench) -> None:
    """1,000 users and the `balance` server on them: every benchmark asks it something."""
    log("loading 1,000 users (small database)")
    work = bench.workdir
    # The first 100 accounts are low ($10): the watcher alerts for them.
    small = load_users(work / "small.db", 1000, probes=1000, low_probes=100)
    bench.databases["small"] = small
    bench.balance_user = username(500)
    write_tokens(work / "small-tokens.txt", small)
    bench.files["small_tokens"] = work / "small-tokens.txt"
    bench.servers["balance"] = start_quotaledger("balance", small.url, work)


def setup_ceiling(bench: Bench) -> None:
    """The bare Starlette route answering the balance's exact bytes: what no route beats."""
    if bench.wants("balance", "usage"):
        bench.servers["ceiling"] = start_ceiling(balance_body(bench), bench.workdir)


def ceiling_cases(bench: Bench) -> list[Case]:
    if not bench.wants("balance", "usage"):
        return []
    env = {"QLB_TOKEN": bench.balance_token}
    return [
        Case("ceiling", "ceiling: bare Starlette route", "ceiling", "/api/user/self", "get.lua",
             200, env)
    ]  # fmt: skip


def write_tokens(path: Path, database: LoadedDatabase) -> None:
    path.write_text("\n".join(database.probe_tokens.values()) + "\n")


def balance_body(bench: Bench) -> bytes:
    """The exact bytes `GET /api/user/self` answers (uncompressed), for the ceiling."""
    reply = httpx.get(
        bench.servers["balance"].base_url + "/api/user/self",
        headers={"Authorization": bench.balance_token, "Accept-Encoding": "identity"},
        timeout=10,
    )
    reply.raise_for_status()
    return reply.content


# ---------------------------------------------------------------- running wrk


def check_case(bench: Bench, case: Case) -> None:
    """One request as the Lua script would send it: the expected status, or stop."""
    env = case.run_env()
    url = bench.servers[case.server].base_url + case.path
    if case.script in ("chat.lua", "chat_many.lua"):
        token = env.get("QLB_TOKEN", "none")
        if case.script == "chat_many.lua":
            token = Path(env["QLB_TOKENS_FILE"]).read_text().split()[0]
        reply = httpx.post(
            url,
            headers={"Authorization": f"Bearer {token}"},
            json={"model": env.get("QLB_MODEL", "bench-gpt"), "max_tokens": 64,
                  "messages": [{"role": "user", "content": "Say hello."}]},
            timeout=10,
        )  # fmt: skip
    elif case.script == "usage.lua":
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


def run_case(bench: Bench, case: Case, duration: float) -> WrkResult:
    if case.also is not None:
        return run_split(bench, case, duration)
    return run_wrk(
        bench.servers[case.server].base_url + case.path,
        case.script,
        duration=duration,
        connections=case.connections or bench.config.connections,
        env=case.run_env(),
    )


def run_split(bench: Bench, case: Case, duration: float) -> WrkResult:
    """Half the connections on each of two servers at once (two wrk processes on the client
    core): requests per second summed, the latency percentiles the worse of the two."""
    from concurrent.futures import ThreadPoolExecutor

    connections = case.connections or bench.config.connections
    urls = [bench.servers[name].base_url + case.path for name in (case.server, case.also)]
    with ThreadPoolExecutor(2) as pool:
        env = case.run_env()
        runs = [
            pool.submit(run_wrk, url, case.script, duration=duration,
                        connections=connections // 2, env=env)
            for url in urls
        ]  # fmt: skip
        halves = [run.result() for run in runs]
    return WrkResult(
        requests_per_s=sum(h.requests_per_s for h in halves),
        p50_ms=max(h.p50_ms for h in halves),
        p99_ms=max(h.p99_ms for h in halves),
        requests=sum(h.requests for h in halves),
        non_2xx=sum(h.non_2xx for h in halves),
        socket_errors=sum(h.socket_errors for h in halves),
        duration_s=max(h.duration_s for h in halves),
        connections=connections,
    )


def run_rounds(bench: Bench, cases: list[Case]) -> None:
    """Every case once per round, rounds interleaving the cases so that the machine's noise
    hits them alike."""
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


# ---------------------------------------------------------------- rows of the report


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


def ceiling_rows(cases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    ceiling = cases.get("ceiling")
    if not ceiling:
        return []
    note = f"p99 {ceiling['p99_ms']:.2f} ms"
    return [ratio_row("ceiling: bare Starlette GET", ceiling["requests_per_s"], "req/s", None, "",
                      None, note=note)]  # fmt: skip


def vs_ceiling(
    cases: dict[str, dict[str, Any]], name: str, metric: str, target: float, unit: str = "req/s"
) -> list[dict[str, Any]]:
    """The row of case `name` against the ceiling's requests per second (none if not run)."""
    if name not in cases:
        return []
    case, ceiling = cases[name], cases.get("ceiling")
    ceil_rps = ceiling["requests_per_s"] if ceiling else None
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
    return [ratio_row(metric, rps, unit, ceil_rps, f"≥ {target:g}x", passed, ratio, note, "req/s")]


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
