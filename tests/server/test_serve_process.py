"""The start-up path, through a real `quotaledger serve` process on loopback with a real
SQLite file: first admin, the reference page's walk-through, no secret at rest or in logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support import (
    ADMIN_PASSWORD,
    LiveServer,
    free_port,
    start_server,
    stop_server,
    token_from,
)


def test_the_reference_walk_through_works_on_a_real_server(live_server: LiveServer) -> None:
    created = live_server.cli(
        "user",
        "create",
        "alice",
        "--password-stdin",
        "--usd",
        "49.995818",
        input="alice-password-123\n",
    )
    assert created.returncode == 0, created.stderr
    token = token_from(live_server.base_url, "alice", "alice-password-123")

    response = httpx.get(
        live_server.base_url + "/api/user/self",
        headers={"Authorization": token, "Accept-Encoding": "gzip"},
    )

    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["data"]["quota"] == 24_997_909
    assert response.json()["data"]["quota_usd"] == "49.99"


def test_no_token_or_password_reaches_the_database_file_or_the_log(
    live_server: LiveServer, tmp_path: Path
) -> None:
    live_server.cli("user", "create", "alice", "--password-stdin", input="alice-password-123\n")
    token = token_from(live_server.base_url, "alice", "alice-password-123")
    httpx.get(live_server.base_url + "/api/user/self", headers={"Authorization": token})
    httpx.post(
        live_server.base_url + "/api/user/login",
        json={"username": "alice", "password": "wrong-password-456"},
    )

    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("live.db"))
    log = live_server.log()
    for secret in (token, "alice-password-123", "wrong-password-456", ADMIN_PASSWORD):
        assert secret.encode() not in stored
        assert secret not in log
    assert "login_failed user='alice'" in log  # the security event is logged, the secret not


def test_first_start_prints_a_random_admin_password_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QUOTALEDGER_ADMIN_PASSWORD"}
    url = f"sqlite:///{tmp_path / 'first.db'}"
    first = _serve_briefly(url, env, tmp_path / "first.log")
    second = _serve_briefly(url, env, tmp_path / "second.log")

    match = re.search(r"password: (\S+)", first)
    assert match, first
    assert "password:" not in second
    assert len(match.group(1)) >= 16


def _serve_briefly(url: str, env: dict[str, str], log_path: Path) -> str:
    """Start `serve`, wait for /healthz, stop it; return what it printed."""
    port = free_port()
    with log_path.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quotaledger",
                "serve",
                "--port",
                str(port),
                "--database-url",
                url,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return log_path.read_text()


def test_the_admin_password_can_be_given_by_environment(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'env.db'}", tmp_path)
    try:
        token = token_from(server.base_url, "admin", ADMIN_PASSWORD)
        response = httpx.get(server.base_url + "/api/user/self", headers={"Authorization": token})
        assert response.json()["data"]["role"] == 10  # new-api's admin
        assert ADMIN_PASSWORD not in server.log()
    finally:
        stop_server(server)


def test_the_access_log_is_off_by_default_and_on_with_its_setting(tmp_path: Path) -> None:
    logs = {}
    for setting in ("0", "1"):
        server = start_server(
            f"sqlite:///{tmp_path / f'access-{setting}.db'}",
            tmp_path,
            {"QUOTALEDGER_ACCESS_LOG": setting},
        )
        try:
            assert httpx.get(server.base_url + "/api/status?probe=1").status_code == 200
            time.sleep(0.5)  # the engine writes its line after the answer
            logs[setting] = server.log()
        finally:
            stop_server(server)

    assert "GET /api/status" not in logs["0"]
    assert "GET /api/status" in logs["1"]
    assert "probe=1" not in logs["1"]  # query strings (Gemini's ?key=) are not logged
