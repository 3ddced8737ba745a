"""`quotaledger redeem ...`: make, list and disable redemption codes (SPEC §9), which users
redeem with `POST /api/user/topup` (new-api's top-up by code)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

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
from quotaledger.cli.keys import _expiry as expiry
from quotaledger.money import format_usd


@click.group()
def redeem() -> None:
    """Make, list and disable redemption codes (qlr-...) that add quota once."""


@redeem.command()
@amount_options
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="How many codes to make.")  # fmt: skip
@click.option("--expires", metavar="30d|YYYY-MM-DD",
              help="A duration from now, or a date (to the end of that UTC day).")  # fmt: skip
@click.option("--name", default="", help="A name for the batch, e.g. launch-promo.")
@json_option
@database_url_option
@handles_errors
def create(
    usd: str | None, quota: int | None, count: int, expires: str | None, name: str,
    as_json: bool, database_url: str | None,
) -> None:  # fmt: skip
    """Make COUNT codes worth --usd X (or --quota N) each and print them, once: only their
    hashes are kept.

    \b
    Examples:
      quotaledger redeem create --usd 5
      quotaledger redeem create --usd 10 --count 20 --expires 30d --name launch
    """
    from quotaledger.billing import redemptions

    amount = amount_in_quota(usd, quota, required=True)
    expires_at = expiry(expires) if expires else None
    database = open_database(database_url)
    made = redemptions.create_codes(database, amount, count, name=name, expires_at=expires_at)
    audited(database, "redemption.create", name or f"{count} codes", count=count, quota=amount,
            ids=[code.id for code, _ in made])  # fmt: skip
    if as_json:
        now = time.time()
        print_json([code.as_json(now) | {"code": raw} for code, raw in made])
        return
    until = f", until {_date(expires_at)}" if expires_at else ""
    click.echo(f"Made {count} code(s) worth ${format_usd(amount)} each{until}; "
               "shown once, keep them secret:", err=True)  # fmt: skip
    for _, raw in made:
        click.echo(raw)


@redeem.command(name="list")
@json_option
@database_url_option
@handles_errors
def list_codes(as_json: bool, database_url: str | None) -> None:
    """List every code: its hint, value, state and who redeemed it."""
    from quotaledger.billing import redemptions

    found = redemptions.list_codes(open_database(database_url))
    now = time.time()
    if as_json:
        print_json([code.as_json(now) for code in found])
        return
    if not found:
        click.echo("No redemption codes. Make some with: quotaledger redeem create --usd X")
        return
    columns = ("id", "name", "code", "value", "state", "expires", "redeemed by", "redeemed")
    print_table(columns, [
        (str(c.id), c.name, c.hint, f"${format_usd(c.quota)}", c.state(now),
         _date(c.expires_at) or "never", c.redeemed_by or "", _date(c.redeemed_at) or "")
        for c in found
    ])  # fmt: skip


@redeem.command()
@click.argument("code_id", metavar="ID", type=int)
@database_url_option
@handles_errors
def disable(code_id: int, database_url: str | None) -> None:
    """Disable the code ID: it can no longer be redeemed."""
    from quotaledger.billing import redemptions

    database = open_database(database_url)
    code = redemptions.disable_code(database, code_id)
    audited(database, "redemption.disable", code.id, name=code.name)
    click.echo(f"Disabled redemption code {code.id} ({code.hint}).")


def _date(moment: int | None) -> str | None:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M") if moment else None
