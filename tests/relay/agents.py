"""The real agent CLIs users run against a relay: Claude Code, Codex CLI and Gemini CLI,
installed from npm once into a cache folder (`QUOTALEDGER_AGENTS_DIR`, default
`~/.cache/quotaledger/agents`) and run non-interactively, offline, against a live relay
whose channels are the local fake upstream. Skipped with the reason where npm is missing."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# The versions these tests were written against (`README`'s agent recipes name them too).
PACKAGES = {
    "claude": "@anthropic-ai/claude-code@2.1.197",
    "codex": "@openai/codex@0.171.0",
    "gemini": "@google/gemini-cli@0.61.0",
}
TIMEOUT = 180  # seconds for one agent turn (their start-up is most of it)


def agents_dir() -> Path:
    configured = os.environ.get("QUOTALEDGER_AGENTS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "quotaledger" / "agents"


def install_agents() -> Path:
    """The folder whose `node_modules/.bin` holds the three CLIs, installed if needed."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm and node are needed to install Claude Code, Codex CLI and Gemini CLI")
    folder = agents_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # Test workers (pytest-xdist) may get here at once: one installs, the others wait.
    with (folder / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _install(folder)
    return folder / "node_modules" / ".bin"


def _install(folder: Path) -> None:
    wanted = json.dumps(PACKAGES, sort_keys=True)
    stamp = folder / "installed.json"
    if not stamp.exists() or stamp.read_text() != wanted:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder),
             *PACKAGES.values()],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"npm install of the agent CLIs failed:\n{done.stderr[-2000:]}")
        stamp.write_text(wanted)


@dataclass
class Turn:
    exit_code: int
    stdout: str
    stderr: str


def run_agent(argv: list[str], env: dict[str, str], cwd: Path) -> Turn:
    """One non-interactive turn; only what the agent needs of the environment is passed
    (no proxy, no real provider key can leak into it)."""
    base = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8", "TERM": "dumb"}
    done = subprocess.run(
        argv, env={**base, **env}, cwd=cwd, capture_output=True, text=True,
        timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    return Turn(done.returncode, done.stdout, done.stderr)
