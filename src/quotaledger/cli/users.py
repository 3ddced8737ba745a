"""`quotaledger user ...`: create, top up, enable, disable, list and show accounts."""

from __future__ import annotations

import sys

import click

from quotaledger.cli.amounts import amount_in_quota, amount_options
from quotaledger.cli.common import (
    audited,
    database_url_option,
    handles_errors,
    json_option,
    open_database,
    print_json,
    print_table,
)
from quotaledger.cli.user_token import token


@click.group()
def user() -> None:
    """Create, top up, disable and list accounts; issue a system token."""


user.add_command(token)  # the System Token dialog, in its own module


@user.command()
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--group", default="default", show_default=True, help="Pricing group.")
@click.option("--admin", is_flag=True, help="Give the account the admin role.")
@amount_options
@database_url_option
@handles_errors
def create(
    name: str,
    password_stdin: bool,
    group: str,
    admin: bool,
    usd: str | None,
    quota: int | None,
    database_url: str | None,
) -> None:
    """Create an account NAME, with an optional starting balance.

    Without --password-stdin a random password is generated and printed once.

    \b
    Examples:
      quotaledger user create alice --usd 50
      printf '%s' "$PASSWORD" | quotaledger user create bob --password-stdin --quota 1000000
    """
    from quotaledger import passwords
    from quotaledger.identity import accounts

    initial = amount_in_quota(usd, quota, required=False)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = passwords.random_password()
    database = open_database(database_url)
    account = accounts.create_account(
        database, name, password, group=group, role="admin" if admin else "user", quota=initial
    )
    audited(database, "user.create", account.username, role=account.role, group=group,
            quota=initial)  # fmt: skip
    click.echo(f"Created {account.role} {account.username!r} with {_balance(account.quota)}.")
    if not password_stdin:
        click.echo(f"Password (shown once): {password}")


@user.command()
@click.argument("name")
@amount_options
@database_url_option
@handles_errors
def topup(name: str, usd: str | None, quota: int | None, database_url: str | None) -> None:
    """Add balance to NAME (recorded as a grant).

    \b
    Examples:
      quotaledger user topup alice --usd 20
      quotaledger user topup alice --quota 500000
    """
    from quotaledger.billing import ledger

    amount = amount_in_quota(usd, quota, required=True)
    database = open_database(database_url)
    balance = ledger.top_up(database, name, amount, note="top-up (CLI)")
    audited(database, "user.grant", name, quota=amount, reason="top-up (CLI)")
    click.echo(f"Added {_balance(amount)} to {name!r}: now {_balance(balance)}.")


@user.command()
@click.argument("name")
@database_url_option
@handles_errors
def disable(name: str, database_url: str | None) -> None:
    """Disable NAME: its token and sessions stop working (403)."""
    from quotaledger.identity import accounts

    database = open_database(database_url)
    accounts.set_status(database, name, "disabled")
    audited(database, "user.disable", name)
    click.echo(f"Disabled {name!r}.")


@user.command()
@click.argument("name")
@database_url_option
@handles_errors
def enable(name: str, database_url: str | None) -> None:
    """Enable NAME again."""
    from quotaledger.identity import accounts

    database = open_database(database_url)
    accounts.set_status(database, name, "enabled")
    audited(database, "user.enable", name)
    click.echo(f"Enabled {name!r}.")


@user.command(name="list")
@json_option
@database_url_option
@handles_errors
def list_users(as_json: bool, database_url: str | None) -> None:
    """List every account with its balance."""
    from quotaledger.identity import accounts

    found = accounts.list_accounts(open_database(database_url))
    if as_json:
        print_json([a.as_json() for a in found])
        return
    columns = ("id", "username", "role", "status", "group", "balance", "used", "requests")
    print_table(columns, [
        (str(a.id), a.username, a.role, a.status, a.group, _balance(a.quota),
         _usd(a.used_quota), f"{a.request_count:,}")
        for a in found
    ])  # fmt: skip


@user.command()
@click.argument("name")
@json_option
@database_url_option
@handles_errors
def show(name: str, as_json: bool, database_url: str | None) -> None:
    """Show one account."""
    from quotaledger.identity import accounts

    account = accounts.find_account(open_database(database_url), name)
    if as_json:
        print_json(account.as_json())
        return
    token = f"ends {account.token_hint}" if account.token_hint else "none"
    click.echo(
        f"{account.username} (id {account.id}, {account.role}, {account.status}, "
        f"group {account.group})\n"
        f"  balance:  {_balance(account.quota)}\n"
        f"  used:     {_balance(account.used_quota)} in {account.request_count:,} requests\n"
        f"  token:    {token}"
    )


def _usd(quota: int) -> str:
    from quotaledger.money import format_usd

    return f"${format_usd(quota)}"


def _balance(quota: int) -> str:
    return f"{_usd(quota)} ({quota:,} quota)"


from quotaledger.cli.limits import user_limits  # noqa: E402 - registered after the group's own

user.add_command(user_limits)
