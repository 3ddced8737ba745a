"""The root `quotaledger` group.

Each subcommand lives in its own module and is imported only when it runs (Click's
documented lazy-loading pattern): `quotaledger balance` stays fast because it never
imports the server, the database or the monitor.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

import click

from quotaledger import __version__
from quotaledger.cli.exits import Exit

# name -> "module:attribute", and the one-line help shown by `quotaledger --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("quotaledger.cli.serve:serve", "Run the HTTP server (balance API and web pages)."),
    "db": ("quotaledger.cli.db:db", "Database schema: upgrade to the latest migration."),
    "user": ("quotaledger.cli.users:user", "Create, top up, disable, list accounts; tokens."),
    "price": ("quotaledger.cli.prices:price", "Set, list and delete model prices."),
    "group": ("quotaledger.cli.prices:group", "Set a user group's price multiplier."),
    "key": ("quotaledger.cli.keys:key", "Create, list and disable API keys for the relay."),
    "channel": ("quotaledger.cli.channels:channel", "Add, list and test relay upstreams."),
    "redeem": ("quotaledger.cli.redeem:redeem", "Make, list and disable redemption codes."),
    "balance": ("quotaledger.cli.balance:balance", "Show an account's balance (any provider)."),
    "check": ("quotaledger.cli.balance:check", "Monitoring-plugin check of a balance."),
    "watch": ("quotaledger.cli.watch:watch", "Poll balances and send alerts."),
    "status": ("quotaledger.cli.watch:status", "Table of watched accounts from the history."),
    "history": ("quotaledger.cli.watch:history", "Polls of one watched account; draw a chart."),
    "notify-test": ("quotaledger.cli.watch:notify_test", "Send a test notification."),
}


# The extra each command needs beyond `pip install quotaledger` (SPEC 10, pyproject.toml):
# None for the client's commands; a command not listed (key, channel, ...) needs the server's.
EXTRA_BY_COMMAND: dict[str, str | None] = {
    "balance": None,
    "check": None,
    "watch": "monitor",
    "status": "monitor",
    "history": "monitor",
    "notify-test": "monitor",
}


def extra_for(command: str) -> str | None:
    return EXTRA_BY_COMMAND.get(command, "server")


class LazyGroup(click.Group):
    """A group whose commands are imported on first use.

    A command whose extra is not installed fails to import (or, for a library imported
    only when needed, to run) with a `ModuleNotFoundError`: that becomes a one-line error
    naming the extra to install, exit 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            _exit_if_an_extra_is_missing(cmd_name, exc)
            raise
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            if ctx.invoked_subcommand is not None:
                _exit_if_an_extra_is_missing(ctx.invoked_subcommand, exc)
            raise

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

    An option marked [env var: QUOTALEDGER_...] in a command's --help can also be set
    with that environment variable. The server's settings are all QUOTALEDGER_*
    variables (README, Configuration). Secrets are never options: the token comes
    from QUOTALEDGER_TOKEN or a file.
    """


def _exit_if_an_extra_is_missing(command: str, error: ModuleNotFoundError) -> None:
    """Exit 2 naming the extra when `error` is a third-party module that `command`'s extra
    installs; return (the caller re-raises) for our own modules and the client's commands,
    where a missing module is a bug, not a choice of install."""
    missing = (error.name or "").partition(".")[0]
    extra = extra_for(command)
    if extra is None or not missing or missing == "quotaledger":
        return
    _missing_extra(command, extra, missing)


def _missing_extra(command: str, extra: str, module: str) -> NoReturn:
    click.secho(
        f"Error: `quotaledger {command}` needs the {extra!r} extra ({module} is not "
        f"installed): pip install 'quotaledger[{extra}]'",
        fg="red",
        err=True,
    )
    sys.exit(Exit.USAGE)


def main(*args: Any) -> None:
    cli(*args)
