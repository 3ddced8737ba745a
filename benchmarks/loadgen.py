"""The load generator: wrk (Debian's package), pinned to the client core, with the Lua
scripts in `benchmarks/lua/`, and a parser for its `--latency` report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from fixtures import CLIENT_CORE, clean_env, pinned

LUA = Path(__file__).resolve().parent / "lua"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    duration_s: float
    connections: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def wrk_version() -> str:
    done = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0].strip() if done.stdout + done.stderr else "?"


def run_wrk(
    url: str,
    script: str,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    env: dict[str, str] | None = None,
) -> WrkResult:
    """One wrk run; `script` is a file name in benchmarks/lua/."""
    command = pinned(
        CLIENT_CORE,
        [
            WRK,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration:g}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(LUA / script),
            url,
        ],
    )
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        check=False,
        timeout=duration + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout, connections)


def _ms(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_wrk(text: str, connections: int) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if rps is None or total is None:
        raise RuntimeError(f"cannot parse wrk's output:\n{text}")
    percentiles = {
        p: _ms(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=percentiles.get("50", float("nan")),
        p99_ms=percentiles.get("99", float("nan")),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        duration_s=_ms(total.group(2), total.group(3)) / 1000,
        connections=connections,
    )
