"""The balance query against the bare Starlette ceiling: `GET /api/user/self` with a valid
token, the 401s (a well-formed unknown token, a malformed one) and the 429 over the limit."""

from __future__ import annotations

import shutil
from typing import Any

from fixtures import start_quotaledger
from harness import Bench, Case, vs_ceiling

from quotaledger import tokens

LIMITED_RATE = "1/hour"  # the 429 server: one balance query per token per hour


def setup(bench: Bench) -> None:
    work = bench.workdir
    shutil.copy(work / "small.db", work / "limited.db")
    bench.servers["limited"] = start_quotaledger(
        "limited", f"sqlite:///{work / 'limited.db'}", work, rate_limit_balance=LIMITED_RATE
    )


def cases(bench: Bench) -> list[Case]:
    token = bench.balance_token
    self_path = "/api/user/self"
    return [
        Case("balance", "GET /api/user/self (valid token)", "balance", self_path, "get.lua", 200,
             {"QLB_TOKEN": token}),
        Case("unauth_unknown", "401: well-formed unknown token", "balance", self_path, "get.lua",
             401, {"QLB_TOKEN": tokens.generate_token()}),
        Case("unauth_malformed", "401: malformed token", "balance", self_path, "get.lua", 401,
             {"QLB_TOKEN": "ql_this-is-not-a-token"}),
        Case("limited", f"429: over the limit ({LIMITED_RATE})", "limited", self_path, "get.lua",
             429, {"QLB_TOKEN": token}),
    ]  # fmt: skip


def rows(
    bench: Bench, summary: dict[str, dict[str, Any]], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    return [
        *vs_ceiling(summary, "balance", "GET /api/user/self", 0.8),  # issue 25
        *vs_ceiling(summary, "unauth_unknown", "401 well-formed unknown token", 0.8),
        *vs_ceiling(summary, "unauth_malformed", "401 malformed token", 0.8),
        *vs_ceiling(summary, "limited", f"429 over the limit ({LIMITED_RATE})", 0.8),
    ]
