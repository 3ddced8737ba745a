"""A real `quotaledger serve` under 20 concurrent logins stays within a bounded memory:
argon2id takes 46 MiB per hash, and only `MAX_PARALLEL_HASHES` run at once (20 concurrent
logins used to take the server from 85 MB to 807 MB)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from quotaledger import passwords
from support import start_server, stop_server

MIB = 1024 * 1024
HASH_MEMORY = 46 * MIB
LOGINS = 20


def _memory(pid: int, field: str) -> int:
    """`VmRSS` (resident now) or `VmHWM` (the peak so far) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_twenty_concurrent_logins_keep_the_server_memory_bounded(tmp_path: Path) -> None:
    server = start_server(
        f"sqlite:///{tmp_path / 'live.db'}",
        tmp_path,
        # 21 wrong passwords from one address: none may wait (login_throttle) for this.
        {
            "QUOTALEDGER_RATE_LIMIT_LOGIN_ADDRESS": "100/minute",
            "QUOTALEDGER_LOGIN_ADDRESS_FREE_FAILURES": "100",
        },
    )
    try:
        pid = server.worker_pid
        with httpx.Client(base_url=server.base_url, timeout=60) as client:

            def login(name: str) -> int:
                body = {"username": name, "password": "a-wrong-password-123"}
                return client.post("/api/user/login", json=body).status_code

            assert login("warm-up") == 401  # the first login loads what every login uses
            before = _memory(pid, "VmRSS")
            with ThreadPoolExecutor(max_workers=LOGINS) as pool:
                codes = list(pool.map(login, [f"nobody-{i}" for i in range(LOGINS)]))
        peak = _memory(pid, "VmHWM")
    finally:
        stop_server(server)

    growth = peak - before
    print(f"RSS before {before / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB (+{growth / MIB:.0f})")
    assert codes == [401] * LOGINS
    # The hashes in flight, and room for the rest (threads, buffers, allocator slack).
    assert growth < (passwords.MAX_PARALLEL_HASHES + 2) * HASH_MEMORY + 64 * MIB
