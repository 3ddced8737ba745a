"""`quotaledger user token NAME`: the System Token dialog of the Account Settings page, in a
terminal, so that an operator can get the admin token that `POST /api/usage` needs."""

from __future__ import annotations

import sys

import click

from quotaledger.cli.common import database_url_option, handles_errors, open_database


@click.command(name="token")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@database_url_option
@handles_errors
def token(name: str, password_stdin: bool, database_url: str | None) -> None:
    """Verify NAME's password, then print a new system token once.

    As on the web page: the token has every permission of the account, it is shown only
    this once (only its hash is stored), and it replaces NAME's previous token at once, on
    every server. A wrong password exits 3 and changes nothing. Without --password-stdin
    the password is asked for without echo.

    The token alone goes to standard output (prompt and notes to stderr), so that it can be
    captured into a variable.

    \b
    Examples:
      export ADMIN_TOKEN="$(quotaledger user token admin)"    # asks for the password
      printf '%s\\n' "$PASSWORD" | quotaledger user token alice --password-stdin
    """
    from quotaledger.identity import accounts

    password = _read_password(password_stdin)
    database = open_database(database_url)
    account = accounts.authenticate(database, name, password)
    new_token = accounts.replace_token(database, account.id)
    if account.token_hint:
        click.echo(f"The previous token ({account.token_hint}) no longer works.", err=True)
    click.echo(new_token)
    click.echo(
        "Shown once: keep it in an environment variable or a secret store, never in code.",
        err=True,
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, err=True)
    return password
