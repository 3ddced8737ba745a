"""SPEC §10: `pip install quotaledger` is the client alone; the server and the monitor are
extras, and a command whose extra is missing says which one to install.

The slow test installs the package from this checkout into a fresh virtualenv, the way a
user would (with its base dependencies, from the machine's package index), and uses it
against a real server running in the development environment."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from support import start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Import names of what only the extras install (SPEC §10: none of it in the light client).
SERVER_AND_MONITOR_MODULES = [
    "fastapi",
    "starlette",
    "granian",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "argon2",
    "limits",
    "jinja2",
    "orjson",
    "prometheus_client",
    "apprise",
    "matplotlib",
]


def _names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip() for r in requirements}


def test_the_base_install_is_the_client_only() -> None:
    base = _names(PYPROJECT["project"]["dependencies"])

    assert base == {
        "httpx",
        "httpcore",
        "sniffio",
        "aiohttp",
        "certifi",
        "click",
        "rich",
        "platformdirs",
    }


def test_the_extras_split_server_and_monitor_and_all_and_test_take_both() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]

    assert {"fastapi", "sqlalchemy", "psycopg", "redis", "prometheus-client"} <= _names(
        extras["server"]
    )
    assert {"apprise", "matplotlib", "prometheus-client"} <= _names(extras["monitor"])
    assert extras["all"] == ["quotaledger[server,monitor]"]
    assert "quotaledger[all]" in extras["test"]


@pytest.mark.slow
def test_a_bare_install_runs_balance_against_a_live_server_and_names_missing_extras(
    tmp_path: Path, sqlite_url: str
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python, quotaledger = venv / "bin" / "python", venv / "bin" / "quotaledger"
    installed = _run([python, "-m", "pip", "install", "--quiet", ROOT], timeout=900)
    assert installed.returncode == 0, installed.stderr

    importable = _run([python, "-c", _FIND_MODULES, *SERVER_AND_MONITOR_MODULES])
    assert importable.stdout.split() == [], "the light client installed server or monitor libraries"

    server = start_server(sqlite_url, tmp_path)
    try:
        password = "alice-password-123\n"
        server.cli("user", "create", "alice", "--usd", "50", "--password-stdin", input=password)
        token = server.cli("user", "token", "alice", "--password-stdin", input=password)
        balance = _run(
            [quotaledger, "balance", "--base-url", server.base_url],
            env={"QUOTALEDGER_TOKEN": token.stdout.strip()},
        )
    finally:
        stop_server(server)
    serve = _run([quotaledger, "serve", "--port", "9"])
    user = _run([quotaledger, "user", "list"])

    assert balance.returncode == 0, balance.stderr
    assert balance.stdout.startswith("$50.00 left (25,000,000 quota)")
    assert serve.returncode == 2
    assert "pip install 'quotaledger[server]'" in serve.stderr
    assert "Traceback" not in serve.stderr
    assert user.returncode == 2
    assert "pip install 'quotaledger[server]'" in user.stderr


_FIND_MODULES = (
    "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
)


def _run(
    args: list[object], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run in the fresh virtualenv: the installed package only, so no PYTHONPATH pointing
    at this checkout's sources, and a working directory outside it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "QUOTA"))}
    return subprocess.run(
        [str(a) for a in args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(str(args[0])).parent,
    )
