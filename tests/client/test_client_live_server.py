"""End to end: the `balance` command (and so the SDK) against a real `quotaledger serve` process
(the `live_server` fixture of tests/conftest.py), as the reference page's users would."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx

from quotaledger.cli.exits import Exit

PASSWORD = "alice-password-123"


def create_alice(live_server: Any) -> None:
    created = live_server.cli(
        "user", "create", "alice", "--password-stdin", "--quota", "24997909", input=PASSWORD
    )
    assert created.returncode == 0, created.stderr


def system_token(base_url: str) -> str:
    """Account Settings, System Token: log in, verify the password again, get a token."""
    with httpx.Client(base_url=base_url) as browser:
        login = browser.post("/api/user/login", json={"username": "alice", "password": PASSWORD})
        login.raise_for_status()
        issued = browser.post(
            "/api/user/token",
            json={"password": PASSWORD},
            headers={"X-CSRF-Token": browser.cookies["ql_csrf"]},
        )
        issued.raise_for_status()
        token: str = issued.json()["data"]["token"]
        return token


def balance_command(base_url: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUOTALEDGER_TOKEN": token, "QUOTALEDGER_BASE_URL": base_url}
    return subprocess.run(
        [sys.executable, "-m", "quotaledger", "balance"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_balance_command_prints_the_reference_pages_example(live_server: Any) -> None:
    create_alice(live_server)
    result = balance_command(live_server.base_url, system_token(live_server.base_url))
    assert result.returncode == Exit.OK, result.stderr
    assert result.stdout.startswith("$49.99 left (24,997,909 quota) · used $0.00 · 0 requests")


def test_replaced_token_is_refused_with_exit_3(live_server: Any) -> None:
    create_alice(live_server)
    old = system_token(live_server.base_url)
    system_token(live_server.base_url)
    result = balance_command(live_server.base_url, old)
    assert result.returncode == Exit.AUTHENTICATION
    assert "refused the token" in result.stderr
    assert old not in result.stderr


def test_a_keys_own_balance_from_a_real_server(live_server: Any) -> None:
    """`balance --key-env` reads `GET /api/usage/token` from quotaledger itself: a key made with
    `key create --usd 5` has $5.00 of $5.00 left and has used nothing."""
    create_alice(live_server)
    created = live_server.cli("key", "create", "alice", "--name", "laptop", "--usd", "5")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    done = subprocess.run(
        [sys.executable, "-m", "quotaledger", "balance", "--base-url", live_server.base_url,
         "--key-env", "LAPTOP_KEY"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "LAPTOP_KEY": key},
    )  # fmt: skip
    assert done.returncode == Exit.OK, done.stderr
    assert "$5.00 left of $5.00 on key laptop (2,500,000 quota)" in done.stdout
    assert "used $0.00" in done.stdout
    assert key not in done.stdout + done.stderr
