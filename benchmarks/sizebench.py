"""Database size: the balance query over 1,000 users against the same over 1,000,000
(100,000 with --quick), 1,000 tokens in turn on each."""

from __future__ import annotations

import time
from typing import Any

from fixtures import load_users, start_quotaledger
from harness import Bench, Case, log, ratio_row, write_tokens


def setup(bench: Bench) -> None:
    users, work = bench.config.large_users, bench.workdir
    log(f"bulk-loading {users:,} users (large database)")
    started = time.monotonic()
    large = load_users(work / "large.db", users, probes=1000)
    log(f"  loaded in {time.monotonic() - started:.1f} s")
    bench.databases["large"] = large
    write_tokens(work / "large-tokens.txt", large)
    bench.files["large_tokens"] = work / "large-tokens.txt"
    bench.servers["large"] = start_quotaledger("large", large.url, work)


def cases(bench: Bench) -> list[Case]:
    users = bench.config.large_users
    return [
        Case("size_small", "GET /api/user/self, 1,000 users (1,000 tokens in turn)", "balance",
             "/api/user/self", "rotate.lua", 200,
             {"QLB_TOKENS_FILE": str(bench.files["small_tokens"])}),
        Case("size_large", f"GET /api/user/self, {users:,} users (1,000 tokens in turn)", "large",
             "/api/user/self", "rotate.lua", 200,
             {"QLB_TOKENS_FILE": str(bench.files["large_tokens"])}),
    ]  # fmt: skip


def rows(
    bench: Bench, summary: dict[str, dict[str, Any]], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    if "size_small" not in summary or "size_large" not in summary:
        return []
    small, large = summary["size_small"], summary["size_large"]
    users = bench.config.large_users
    ratio = large["requests_per_s"] / small["requests_per_s"]
    note = f"p99 {large['p99_ms']:.2f} vs {small['p99_ms']:.2f} ms" + (
        "" if users >= 1_000_000 else " (QUICK: not 1,000,000)"
    )
    return [
        ratio_row(f"GET self, {users:,} vs 1,000 users", large["requests_per_s"], "req/s",
                  small["requests_per_s"], "≥ 0.9x", ratio >= 0.9, ratio, note)
    ]  # fmt: skip
