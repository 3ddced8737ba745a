"""Usage charges: `POST /api/usage` with unique `request_id`s against the ceiling, then the
ledger's invariant checked over every charge the runs made."""

from __future__ import annotations

import uuid
from typing import Any

from fixtures import ledger_check, load_users, set_price, start_quotaledger
from harness import Bench, Case, log, vs_ceiling

USAGE_USERS = 100


def setup(bench: Bench) -> None:
    log(f"loading {USAGE_USERS} users with a price (usage database)")
    work = bench.workdir
    usage = load_users(work / "usage.db", USAGE_USERS, probes=USAGE_USERS, probe_quota=10**15)
    set_price(usage)
    bench.databases["usage"] = usage
    bench.servers["usage"] = start_quotaledger("usage", usage.url, work)


def cases(bench: Bench) -> list[Case]:
    admin = bench.databases["usage"].admin_token
    return [
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
    ]


def measure(bench: Bench, cases: list[Case]) -> tuple[str, dict[str, Any]]:
    """The ledger after the charges: invariant, rows committed, and no more acknowledged."""
    usage_case = next(c for c in cases if c.name == "usage")
    check = ledger_check(bench.databases["usage"].path)
    acknowledged = sum(r.requests - r.non_2xx for r in usage_case.runs)
    check["acknowledged_in_measured_runs"] = acknowledged
    check["acknowledged_le_committed"] = acknowledged <= check["usage_rows"]
    return "ledger", check


def rows(
    bench: Bench, summary: dict[str, dict[str, Any]], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    return vs_ceiling(summary, "usage", "POST /api/usage charges", 0.45, "charges/s")  # issue 25
