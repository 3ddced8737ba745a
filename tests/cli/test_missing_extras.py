"""A command whose extra is not installed exits 2 naming the extra (SPEC §10). The modules
are hidden here as an uninstalled package would be; tests/test_packaging.py does the same on
a real install without the extras."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from quotaledger.cli.main import cli

KEPT = {"quotaledger.cli", "quotaledger.cli.main", "quotaledger.cli.exits"}


@pytest.fixture
def uninstall() -> Iterator[Callable[[str], None]]:
    """Make `import PACKAGE` fail as if it were not installed (None in sys.modules raises
    ModuleNotFoundError), with our modules imported afresh (some cache what they imported);
    every module is put back afterwards, so later tests see the same classes as before."""
    saved = dict(sys.modules)

    def hide(package: str) -> None:
        for name in list(sys.modules):
            ours = name.startswith("quotaledger.") and name not in KEPT
            if name.partition(".")[0] == package or ours:
                del sys.modules[name]
        sys.modules[package] = None  # type: ignore[assignment]

    yield hide
    sys.modules.clear()
    sys.modules.update(saved)


@pytest.mark.parametrize(
    "args", [["serve"], ["user", "list"], ["db", "upgrade"], ["price", "list"]]
)
def test_a_server_command_without_the_server_extra_names_it(
    uninstall: Callable[[str], None], args: list[str]
) -> None:
    uninstall("sqlalchemy")

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: `quotaledger {args[0]}` needs the 'server' extra (sqlalchemy is not "
        "installed): pip install 'quotaledger[server]'\n"
    )


def test_a_library_imported_only_when_the_command_runs_is_named_too(
    uninstall: Callable[[str], None], tmp_path: Path
) -> None:
    config = tmp_path / "watch.toml"
    config.write_text(
        '[defaults]\nnotify = ["json://127.0.0.1:9/x"]\n'
        '[[account]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\ntoken_env = "T"\n'
        "warn_usd = 1\ncritical_usd = 0.5\n"
    )
    uninstall("apprise")

    result = CliRunner().invoke(cli, ["notify-test", "--config", str(config)], env={"T": "x"})

    assert result.exit_code == 2
    assert "pip install 'quotaledger[monitor]'" in result.stderr


def test_a_missing_module_under_a_client_command_is_a_bug_not_an_extra(
    uninstall: Callable[[str], None],
) -> None:
    uninstall("httpx")

    result = CliRunner().invoke(
        cli, ["balance", "--base-url", "http://127.0.0.1:9"], env={"QUOTALEDGER_TOKEN": "x"}
    )

    assert isinstance(result.exception, ModuleNotFoundError)
    assert "quotaledger[" not in result.output
