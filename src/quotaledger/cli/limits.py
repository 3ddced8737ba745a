"""Rate limits from the command line (SPEC §12): `--rpm`, `--tpm` and `--concurrency` on
`key create` and `key update`, `user limits NAME` and `group limits G [--model M]`.

Each flag takes a whole number from 1, or `off` to remove that limit; a flag not given
leaves that limit as it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from quotaledger.cli.common import (
    database_url_option,
    handles_errors,
    json_option,
    open_database,
    print_json,
)

OFF = "off"


class RateType(click.ParamType):  # type: ignore[type-arg]
    name = "N|off"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value == OFF:
            return value  # type: ignore[no-any-return]
        try:
            number = int(value)
        except ValueError:
            self.fail("expected a whole number from 1, or off", param, ctx)
        if number < 1:
            self.fail("expected a whole number from 1 (off removes the limit)", param, ctx)
        return number


RATE = RateType()


def rate_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for flag, what in (
        ("--concurrency", "concurrent requests"),
        ("--tpm", "tokens per minute (prompt estimate + output cap, corrected at settlement)"),
        ("--rpm", "requests per minute"),
    ):
        command = click.option(flag, type=RATE, help=f"At most N {what}; off: no limit.")(command)
    return command


def merged(current: Any, rpm: Any, tpm: Any, concurrency: Any) -> Any:
    """`current` (`relay.limits.Rates`) with the flags given applied."""
    from quotaledger.relay.limits import checked_rates

    def pick(flag: Any, old: int | None) -> int | None:
        return old if flag is None else (None if flag == OFF else int(flag))

    return checked_rates(
        pick(rpm, current.rpm), pick(tpm, current.tpm),
        pick(concurrency, current.concurrency),
    )  # fmt: skip


def describe(rates: Any) -> str:
    said = [f"{v:,} {k}" for k, v in (("rpm", rates.rpm), ("tpm", rates.tpm),
            ("concurrent", rates.concurrency)) if v is not None]  # fmt: skip
    return ", ".join(said) or "no limits"


def rates_json(rates: Any) -> dict[str, int | None]:
    return {"rpm": rates.rpm, "tpm": rates.tpm, "concurrency": rates.concurrency}


@click.command(name="update")
@click.argument("key_id", metavar="ID", type=int)
@rate_options
@json_option
@database_url_option
@handles_errors
def key_update(
    key_id: int, rpm: Any, tpm: Any, concurrency: Any, as_json: bool, database_url: str | None
) -> None:
    """Change the rate limits of API key ID.

    \b
    Examples:
      quotaledger key update 12 --rpm 60 --tpm 100000 --concurrency 4
      quotaledger key update 12 --tpm off
    """
    from quotaledger.relay import rates as stored

    database = open_database(database_url)
    new = merged(stored.key_rates(database, key_id), rpm, tpm, concurrency)
    stored.set_key_rates(database, key_id, new)
    _said(f"API key {key_id}", new, as_json)


@click.command(name="limits")
@click.argument("name")
@rate_options
@json_option
@database_url_option
@handles_errors
def user_limits(
    name: str, rpm: Any, tpm: Any, concurrency: Any, as_json: bool, database_url: str | None
) -> None:
    """Show or set the rate limits of account NAME (over all its keys). A limit not set is
    its group's default.

    \b
    Examples:
      quotaledger user limits alice --rpm 120 --concurrency 8
      quotaledger user limits alice
    """
    from quotaledger.identity import accounts
    from quotaledger.relay import rates as stored

    database = open_database(database_url)
    account = accounts.find_account(database, name)
    new = merged(stored.account_rates(database, account.id), rpm, tpm, concurrency)
    if (rpm, tpm, concurrency) != (None, None, None):
        stored.set_account_rates(database, account.id, new)
    _said(f"Account {account.username}", new, as_json)


@click.command(name="limits")
@click.argument("name", metavar="G")
@click.option("--model", metavar="M", default="", help="Limit each member's use of model M.")
@rate_options
@json_option
@database_url_option
@handles_errors
def group_limits(
    name: str, model: str, rpm: Any, tpm: Any, concurrency: Any, as_json: bool,
    database_url: str | None,
) -> None:  # fmt: skip
    """Show or set group G's rate limits: defaults for each member account (an account's
    own limits win), or with --model the limits of each member's use of that model.

    \b
    Examples:
      quotaledger group limits default --rpm 60 --tpm 200000
      quotaledger group limits default --model gpt-4o --concurrency 2
    """
    from quotaledger.relay import rates as stored
    from quotaledger.relay.limits import NO_RATES

    database = open_database(database_url)
    current = stored.all_group_rates(database).get((name, model), NO_RATES)
    new = merged(current, rpm, tpm, concurrency)
    if (rpm, tpm, concurrency) != (None, None, None):
        stored.set_group_rates(database, name, new, model)
    _said(f"Group {name}" + (f", model {model}" if model else ""), new, as_json)


def _said(what: str, rates: Any, as_json: bool) -> None:
    if as_json:
        print_json(rates_json(rates))
    else:
        click.echo(f"{what}: {describe(rates)}.")
