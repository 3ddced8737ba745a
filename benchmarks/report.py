"""What a run reports: the machine and the code measured, the table, the ledger check and
the profiles, on standard output."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import fixtures
from fixtures import ROOT
from loadgen import wrk_version


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


def print_ledger(ledger: dict[str, Any]) -> None:
    print(
        f"\nledger after the usage runs: invariant "
        f"{'OK' if ledger['invariant_ok'] else 'BROKEN'}, "
        f"{ledger['usage_rows']:,} usage rows committed, "
        f"{ledger['acknowledged_in_measured_runs']:,} acknowledged in measured runs"
    )


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
