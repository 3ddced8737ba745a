"""scripts/serve and scripts/test (issue 11, item 22): they say what they install, install
only when pyproject.toml changed, and the checks they run print nothing when all is well."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bandit_prints_nothing_when_it_finds_nothing() -> None:
    # `# nosec B123  # why`: anything after `nosec` up to the next `#` is read as test ids,
    # and each word that is not one is a warning line (24 of them read like failures).
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-c", "pyproject.toml", "-r", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout
    assert result.stdout + result.stderr == ""


def test_the_scripts_install_through_ensure_venv_with_their_extra() -> None:
    for script, extra in (("serve", "server"), ("test", "test")):
        text = (ROOT / "scripts" / script).read_text()
        assert f"scripts/ensure-venv {extra}" in text
        assert "pip install" not in text


@pytest.mark.slow
def test_ensure_venv_says_what_it_installs_and_skips_pip_when_nothing_changed(
    tmp_path: Path,
) -> None:
    # A tiny project with the same layout, so that the real script runs the real pip.
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "ensure-venv", tmp_path / "scripts")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "__init__.py").write_text("")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["hatchling>=1.21"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "tiny"\nversion = "1"\n'
        "[project.optional-dependencies]\nserver = []\n"
        '[tool.hatch.build.targets.wheel]\npackages = ["tiny"]\n'
    )

    first = _ensure(tmp_path)
    second_started = time.monotonic()
    second = _ensure(tmp_path)
    second_took = time.monotonic() - second_started
    pyproject.write_text(pyproject.read_text() + "# changed\n")
    third = _ensure(tmp_path)

    assert first.returncode == 0, first.stderr
    # (pip may add warnings about this machine's index configuration after the line)
    assert _first_line(first) == "installing quotaledger[server] into .venv (first run, ~1 min)..."
    assert (tmp_path / ".venv" / ".installed-server").is_file()
    assert second.returncode == 0
    assert second.stderr == ""
    assert second_took < 2  # no pip: pip alone takes longer than this to start
    assert _first_line(third) == "pyproject.toml changed: updating quotaledger[server] in .venv..."
    imported = subprocess.run(
        [tmp_path / ".venv" / "bin" / "python", "-c", "import tiny"], check=False
    )
    assert imported.returncode == 0


def _ensure(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    return subprocess.run(
        [folder / "scripts" / "ensure-venv", "server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.splitlines()[0]
