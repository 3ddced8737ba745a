"""`quotaledger balance` against a bare `python -c "import httpx; ..."` one-liner doing the
same request, both pinned to the client core, run alternately, medians of N runs."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

from fixtures import BIN, CLIENT_CORE, PYTHON, clean_env, pinned
from harness import Bench, Case, log, ratio_row

ONE_LINER = (
    "import httpx, os; "
    "r = httpx.get(os.environ['QLB_URL'] + '/api/user/self', "
    "headers={'Authorization': os.environ['QUOTALEDGER_TOKEN']}, timeout=10); "
    "r.raise_for_status(); d = r.json()['data']; "
    "print(f\"${d['quota'] / 500000:.2f} left\")"
)


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        pinned(CLIENT_CORE, command),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stdout.strip()


def bench_cli(base_url: str, token: str, runs: int) -> dict[str, Any]:
    env = clean_env(QUOTALEDGER_TOKEN=token, QLB_URL=base_url)
    commands = {
        "quotaledger_balance": [str(BIN / "quotaledger"), "balance", "--base-url", base_url],
        "httpx_one_liner": [PYTHON, "-c", ONE_LINER],
        "python_startup": [PYTHON, "-c", "pass"],
    }
    outputs = {name: _timed(command, env)[1] for name, command in commands.items()}  # warm-up
    if "left" not in outputs["quotaledger_balance"] or "left" not in outputs["httpx_one_liner"]:
        raise RuntimeError(f"unexpected output: {outputs}")
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():  # alternate, so that noise hits both alike
            times[name].append(_timed(command, env)[0])
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "runs": runs,
        "median_s": medians,
        "all_s": times,
        "ratio": medians["quotaledger_balance"] / medians["httpx_one_liner"],
        "output": outputs["quotaledger_balance"],
    }


# ---------------------------------------------------------------- as a step of run.py


def measure(bench: Bench, cases: list[Case]) -> tuple[str, dict[str, Any]]:
    runs = bench.config.cli_runs
    log(f"CLI: {runs} runs each")
    return "cli", bench_cli(bench.servers["balance"].base_url, bench.balance_token, runs)


def rows(
    bench: Bench, summary: dict[str, dict[str, Any]], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    cli = extra.get("cli")
    if cli is None:
        return []
    if "skipped" in cli:
        return [ratio_row("quotaledger balance", None, "", None, "≤ 1.5x", None,
                          note=cli["skipped"])]  # fmt: skip
    med = cli["median_s"]
    return [
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
    ]
