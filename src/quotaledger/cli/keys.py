"""`quotaledger key ...`: create, list, disable, enable and delete API keys (SPEC §8)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

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
from quotaledger.cli.limits import key_update, merged, rate_options


@click.group()
def key() -> None:
    """Create, list, disable and delete API keys (sk-ql-...) for the relay."""


@key.command()
@click.argument("username", metavar="USER")
@click.option("--name", required=True, help="A name to tell the key apart, e.g. laptop.")
@amount_options
@click.option("--unlimited", is_flag=True, help="No budget of its own (the default).")
@click.option(
    "--expires", metavar="30d|YYYY-MM-DD",
    help="A duration from now, or a date: the key works until the end of that day (UTC).",
)  # fmt: skip
@click.option("--models", metavar="A,B", help="Only these models [default: every model].")
@click.option(
    "--allow-ip", "networks", multiple=True, metavar="CIDR",
    help="Only from this address or network (repeat for several) [default: any].",
)  # fmt: skip
@click.option("--period", type=click.Choice(["day", "month"]), help="A periodic limit (UTC).")
@click.option("--period-usd", metavar="X", help="USD the key may spend per --period.")
@click.option("--group", metavar="G", help="Pricing group: the user's own, or default.")
@rate_options
@json_option
@database_url_option
@handles_errors
def create(
    username: str, name: str, usd: str | None, quota: int | None, unlimited: bool,
    expires: str | None, models: str | None, networks: tuple[str, ...], period: str | None,
    period_usd: str | None, group: str | None, rpm: Any, tpm: Any, concurrency: Any,
    as_json: bool, database_url: str | None,
) -> None:  # fmt: skip
    """Create an API key for USER and print it once.

    Without --usd or --quota the key has no budget of its own: the user's balance is its
    limit. With one, it may spend at most that much in all.

    \b
    Examples:
      quotaledger key create alice --name laptop
      quotaledger key create alice --name ci --usd 5 --expires 30d --models gpt-4o-mini
      quotaledger key create alice --name office --allow-ip 10.0.0.0/8 --period day --period-usd 2
      quotaledger key create alice --name agent --rpm 60 --tpm 200000 --concurrency 4
    """
    from quotaledger.identity import accounts, keys
    from quotaledger.relay import rates as stored
    from quotaledger.relay.limits import NO_RATES

    if unlimited and (usd is not None or quota is not None):
        raise click.UsageError("give --usd, --quota or --unlimited, not several")
    budget = amount_in_quota(usd, quota, required=False) or None
    if (period is None) != (period_usd is None):
        raise click.UsageError("give --period and --period-usd together")
    limits = keys.KeyLimits(
        quota=budget,
        expires_at=_expiry(expires) if expires else None,
        models=tuple(models.split(",")) if models is not None else None,
        networks=networks or None,
        group=group,
        period=period,
        period_quota=amount_in_quota(period_usd, None, required=True) if period_usd else None,
    )
    rates = merged(NO_RATES, rpm, tpm, concurrency)  # refused before anything is made
    database = open_database(database_url)
    owner = accounts.find_account(database, username)
    created, raw = keys.create_key(database, owner.id, name, limits)
    if rates:
        stored.set_key_rates(database, created.id, rates)
        created = keys.get_key(database, created.id)
    audited(database, "key.create", f"{owner.username}/{created.name}", id=created.id)
    if as_json:
        print_json(key_json(created) | {"key": raw})
        return
    click.echo(f"Created API key {created.id} {created.name!r} for {owner.username}: "
               f"{_budget(created)}, {_expires(created.expires_at)}.", err=True)  # fmt: skip
    click.echo("The key (shown once, keep it secret):", err=True)
    click.echo(raw)


def _expiry(text: str) -> int:
    """Unix time from `30d`-style text (from now) or a date (the end of that UTC day)."""
    from quotaledger.monitor.durations import parse_duration

    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        try:
            return int(time.time() + parse_duration(text).total_seconds())
        except ValueError:
            raise click.BadParameter(
                "give a duration such as 30d or 12h, or a date YYYY-MM-DD", param_hint="--expires"
            ) from None
    return int(day.timestamp()) + 86_400


@key.command(name="list")
@click.argument("username", metavar="[USER]", required=False)
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted keys.")
@json_option
@database_url_option
@handles_errors
def list_keys(
    username: str | None, include_deleted: bool, as_json: bool, database_url: str | None
) -> None:
    """List the API keys of USER, or of everyone."""
    from quotaledger.identity import accounts, keys

    database = open_database(database_url)
    owner = accounts.find_account(database, username).id if username else None
    found = keys.list_keys(database, owner, include_deleted=include_deleted)
    if as_json:
        print_json([key_json(k) for k in found])
        return
    if not found:
        click.echo("No API keys. Create one with: quotaledger key create USER --name NAME")
        return
    now = time.time()
    columns = ("id", "user", "name", "key", "state", "used", "budget", "requests", "expires",
               "last used")  # fmt: skip
    print_table(columns, [
        (str(k.id), k.owner, k.name, k.hint, k.state(now), _usd(k.used_quota), _budget(k),
         f"{k.request_count:,}", _date(k.expires_at) or "never", _date(k.last_used_at) or "never")
        for k in found
    ])  # fmt: skip


def _change(verb: str, apply: Any) -> Any:
    @key.command(name=verb, help=f"{verb.capitalize()} the API key ID.")
    @click.argument("key_id", metavar="ID", type=int)
    @database_url_option
    @handles_errors
    def command(key_id: int, database_url: str | None) -> None:
        database = open_database(database_url)
        changed = apply(database, key_id)
        audited(database, f"key.{verb}", f"{changed.owner}/{changed.name}", id=changed.id)
        click.echo(f"{verb.capitalize()}d API key {changed.id} {changed.name!r}.")

    return command


def _disable(database: Any, key_id: int) -> Any:
    from quotaledger.identity import keys

    return keys.set_key_status(database, key_id, "disabled")


def _enable(database: Any, key_id: int) -> Any:
    from quotaledger.identity import keys

    return keys.set_key_status(database, key_id, "enabled")


def _delete(database: Any, key_id: int) -> Any:
    from quotaledger.identity import keys

    return keys.delete_key(database, key_id)


key.add_command(key_update)
disable = _change("disable", _disable)
enable = _change("enable", _enable)
delete = _change("delete", _delete)


def key_json(k: Any) -> dict[str, Any]:
    """A key for programs: every field but the key itself (never stored)."""
    return {
        "id": k.id, "user": k.owner, "user_id": k.user_id, "name": k.name, "hint": k.hint,
        "status": k.status, "state": k.state(time.time()), "unlimited": k.unlimited,
        "remain_quota": k.remain_quota, "used_quota": k.used_quota,
        "request_count": k.request_count, "expires_at": k.expires_at,
        "models": sorted(k.models) if k.models is not None else None,
        "networks": [str(n) for n in k.networks] if k.networks is not None else None,
        "group": k.group, "period": k.period, "period_quota": k.period_quota,
        "period_used": k.period_used_now(time.time()),
        "period_remaining": k.period_remaining(time.time()),
        "period_resets_at": k.period_resets_at(time.time()), "created_at": k.created_at,
        "last_used_at": k.last_used_at, "deleted_at": k.deleted_at,
        "rpm": k.rpm, "tpm": k.tpm, "concurrency": k.concurrency,
    }  # fmt: skip


def _usd(quota: int) -> str:
    from quotaledger.money import format_usd

    return f"${format_usd(quota)}"


def _budget(k: Any) -> str:
    own = "unlimited" if k.unlimited else f"{_usd(k.remain_quota)} left"
    if k.period is None:
        return own
    return f"{own}; {_usd(k.period_quota - k.period_used_now(time.time()))} left this {k.period}"


def _expires(expires_at: int | None) -> str:
    return f"expires {_date(expires_at)}" if expires_at else "never expires"


def _date(at: int | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC") if at else None
