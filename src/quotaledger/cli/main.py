"""The root `quotaledger` group.

Each subcommand lives in its own module and is imported only when it runs (Click's
documented lazy-loading pattern): `quotaledger balance` stays fast because it never
imports the server, the database or the monitor.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from quotaledger import __version__

# name -> "module:attribute", and the one-line help shown by `quotaledger --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("quotaledger.cli.serve:serve", "Run the HTTP server (balance API and web pages)."),
    "db": ("quotaledger.cli.db:db", "Database schema: upgrade to the latest migration."),
    "user": ("quotaledger.cli.users:user", "Create, top up, disable and list accounts."),
    "price": ("quotaledger.cli.prices:price", "Set, list and delete model prices."),
    "group": ("quotaledger.cli.prices:group", "Set a user group's price multiplier."),
    "key": ("quotaledger.cli.keys:key", "Create, list and disable API keys for the relay."),
    "channel": ("quotaledger.cli.channels:channel", "Add, list and test relay upstreams."),
    "balance": ("quotaledger.cli.balance:balance", "Show an account's balance (any provider)."),
    "check": ("quotaledger.cli.balance:check", "Monitoring-plugin check of a balance."),
    "watch": ("quotaledger.cli.watch:watch", "Poll balances and send alerts."),
    "status": ("quotaledger.cli.watch:status", "Table of watched accounts from the history."),
    "history": ("quotaledger.cli.watch:history", "Polls of one watched account; draw a chart."),
    "notify-test": ("quotaledger.cli.watch:notify_test", "Send a test notification."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show the short help without importing every module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="quotaledger")
def cli() -> None:
    """quotaledger: prepaid LLM API quota (500,000 quota = $1.00).

    \b
    Server:   quotaledger serve, user, price, group, db
    Client:   quotaledger balance, check
    Monitor:  quotaledger watch, status, history, notify-test

    Every option can also be set with an environment variable QUOTALEDGER_<OPTION>.
    """


def main(*args: Any) -> None:
    cli(*args)
