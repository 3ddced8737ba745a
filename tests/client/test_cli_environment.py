"""What `quotaledger --help` says of environment variables is true: an option marked
[env var: NAME] in a command's help is read from NAME, for the client and monitor commands
(`check`'s thresholds included); no secret is an option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from client_payloads import QUOTALEDGER_SELF, TOKEN, json_answer
from client_server import FakeProvider

from quotaledger.cli.main import COMMANDS, cli

CLIENT_AND_MONITOR = ["balance", "check", "watch", "status", "history", "notify-test"]


def command(name: str) -> click.Command:
    found = cli.get_command(click.Context(cli), name)
    assert found is not None
    return found


def test_check_reads_its_thresholds_from_the_environment(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))  # $49.99
    env = {
        "QUOTALEDGER_TOKEN": TOKEN,
        "QUOTALEDGER_BASE_URL": server.url,
        "QUOTALEDGER_WARN_USD": "60",
        "QUOTALEDGER_CRITICAL_USD": "5",
    }
    result = CliRunner().invoke(cli, ["check"], env=env)
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("BALANCE WARNING - $49.99 left (warning at or below $60.00)")


def test_the_root_help_claims_only_marked_options() -> None:
    text = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    assert "Every option can also be set" not in text
    assert "An option marked [env var: QUOTALEDGER_...] in a command's --help can also" in text


@pytest.mark.parametrize("name", CLIENT_AND_MONITOR)
def test_every_client_and_monitor_option_read_from_the_environment_says_so(name: str) -> None:
    found = command(name)
    help_text = " ".join(CliRunner().invoke(cli, [name, "--help"]).output.split())
    for option in found.params:
        if isinstance(option, click.Option) and option.envvar:
            assert isinstance(option.envvar, str) and option.envvar.startswith("QUOTALEDGER_")
            assert f"env var: {option.envvar}" in help_text, option.name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_secret_is_an_option(name: str) -> None:
    for option in command(name).params:
        names = " ".join(getattr(option, "opts", []))
        assert "--token " not in names + " " and "--password " not in names + " ", names
