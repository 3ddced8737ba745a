"""`channel list`'s health and balance columns, and `quotaledger channel balance NAME`
(SPEC §12)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from quotaledger.cli.common import (
    database_url_option,
    fail,
    handles_errors,
    json_option,
    open_database,
    print_json,
)
from quotaledger.cli.exits import Exit


@dataclass(frozen=True)
class Seen:
    health: dict[int, Any]
    stats: dict[int, Any]
    balances: dict[int, Any]


def read_health(database: Any) -> Seen:
    from quotaledger.relay import balances
    from quotaledger.relay.channel_stats import summaries
    from quotaledger.relay.health import HealthBook

    watched = {w.channel_id: w for w in balances.watches(database)}
    return Seen(HealthBook(database).all(), summaries(database), watched)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else "never"


def _balance_text(watch: Any) -> str:
    if watch is None:
        return ""
    if watch.amount is None:
        return f"? ({watch.error or 'not read yet'})"
    money = (
        f"${watch.amount:.2f}" if watch.currency == "USD" else f"{watch.amount} {watch.currency}"
    )
    return money if watch.level == "OK" else f"{money} {watch.level}"


def health_columns(seen: Seen, channel_id: int) -> list[str]:
    from quotaledger.relay.health import Health

    h = seen.health.get(channel_id, Health())
    state = h.state if h.reason is None else f"{h.state}: {h.reason}"
    if h.state == "cooling" and h.until_ms:
        state += f" (until {_when(h.until_ms)})"
    stats = seen.stats.get(channel_id)
    p50 = f"{stats.p50_ms} ms" if stats and stats.p50_ms is not None else ""
    rate = f"{stats.success_rate:.1%} of {stats.requests}" if stats and stats.requests else ""
    error = f"{h.last_error} ({_when(h.last_error_at)})" if h.last_error else ""
    balance = _balance_text(seen.balances.get(channel_id))
    return [state, error, _when(h.last_success_at), p50, rate, balance]


def health_json(seen: Seen, channel_id: int) -> dict[str, Any]:
    from quotaledger.relay.health import Health

    h = seen.health.get(channel_id, Health())
    stats = seen.stats.get(channel_id)
    watch = seen.balances.get(channel_id)
    return {
        "health": h.state, "health_reason": h.reason, "cooling_until_ms": h.until_ms or None,
        "last_error": h.last_error, "last_error_at_ms": h.last_error_at,
        "last_success_at_ms": h.last_success_at,
        "requests_1h": stats.requests if stats else 0,
        "success_rate_1h": stats.success_rate if stats else None,
        "p50_latency_ms_1h": stats.p50_ms if stats else None,
        "balance": None if watch is None else _watch_json(watch),
    }  # fmt: skip


def _watch_json(watch: Any) -> dict[str, Any]:
    return {
        "provider": watch.provider, "base_url": watch.base_url,
        "amount": None if watch.amount is None else str(watch.amount),
        "currency": watch.currency, "checked_at": watch.checked_at, "error": watch.error,
        "alert_usd": None if watch.alert_usd is None else str(watch.alert_usd),
        "disable_at_zero": watch.disable_at_zero, "level": watch.level,
    }  # fmt: skip


def _provider_choice() -> Any:
    from quotaledger.monitor.channel_balances import KEY_PROVIDERS

    return click.Choice(KEY_PROVIDERS)


@click.command(name="balance")
@click.argument("name")
@click.option("--provider", type=_provider_choice(), help="The upstream's balance API.")
@click.option("--base-url", metavar="URL", help="Its site root [default: the provider's own, "
              "else the channel's base URL].")  # fmt: skip
@click.option(
    "--alert-usd", metavar="X", help="Alert the operator at or below X ('off': no alert)."
)
@click.option("--disable-at-zero/--keep-at-zero", default=None,
              help="Disable the channel while its balance is zero or less.")  # fmt: skip
@click.option("--off", "stop", is_flag=True, help="Stop watching the channel's balance.")
@json_option
@database_url_option
@handles_errors
def balance(
    name: str, provider: str | None, base_url: str | None, alert_usd: str | None,
    disable_at_zero: bool | None, stop: bool, as_json: bool, database_url: str | None,
) -> None:  # fmt: skip
    """Watch and read channel NAME's upstream balance, at once. The first time, name the
    provider; the server then polls it every QUOTALEDGER_CHANNEL_BALANCE_INTERVAL seconds
    and alerts QUOTALEDGER_OPERATOR_ALERT_URLS at or below --alert-usd (in the balance's own
    currency). Exit 5 when the balance cannot be read.

    \b
    Examples:
      quotaledger channel balance deepseek --provider deepseek --alert-usd 5 --disable-at-zero
      quotaledger channel balance relay --provider newapi-key --alert-usd 20
      quotaledger channel balance deepseek
    """
    from quotaledger.relay import balances, channels

    database = open_database(database_url)
    found = channels.get_channel(database, name)
    if stop:
        balances.unwatch(database, found.id)
        click.echo(f"Channel {name}: balance no longer watched.")
        return
    current = balances.get_watch(database, found.id)
    if provider or alert_usd is not None or disable_at_zero is not None or base_url:
        _configure(database, found.id, current, provider, base_url, alert_usd, disable_at_zero)
    elif current is None:
        raise click.UsageError(f"channel {name} has no balance watch: give --provider")
    watch = asyncio.run(_check(database, database_url, found.id))
    if as_json:
        print_json({"channel": name} | _watch_json(watch))
    if watch.amount is None or watch.error:
        fail(f"channel {name}: balance unavailable: {watch.error}", Exit.NETWORK)
    if not as_json:
        alert = f", alert at or below {watch.alert_usd}" if watch.alert_usd is not None else ""
        click.echo(f"Channel {name}: {_balance_text(watch)} ({watch.provider}){alert}.")


def _configure(
    database: Any, channel_id: int, current: Any, provider: str | None, base_url: str | None,
    alert_usd: str | None, disable_at_zero: bool | None,
) -> None:  # fmt: skip
    from quotaledger.relay import balances

    if provider is None and current is None:
        raise click.UsageError("the first time, name the balance API with --provider")
    alert = current.alert_usd if current is not None else None
    if alert_usd is not None:
        alert = None if alert_usd == "off" else balances.usd_amount(alert_usd, "alert_usd")
    balances.watch(
        database, channel_id, provider or current.provider,
        base_url=base_url or (current.base_url if current else None), alert_usd=alert,
        disable_at_zero=bool(disable_at_zero if disable_at_zero is not None else
                             (current.disable_at_zero if current else False)),
    )  # fmt: skip


async def _check(database: Any, database_url: str | None, channel_id: int) -> Any:
    from quotaledger.monitor import channel_balances as edges
    from quotaledger.relay.balance_poll import ChannelBalances
    from quotaledger.relay.channels import ChannelCipher
    from quotaledger.settings import Settings

    settings = Settings.from_env(database_url=database_url)
    poller = ChannelBalances(
        database, ChannelCipher(settings.secret_key), fetch=edges.fetcher(),
        level=edges.level, send=edges.sender(edges.alert_urls(settings.operator_alert_urls)),
        interval=settings.channel_balance_interval, clock=time.time,
    )  # fmt: skip
    return await poller.check(channel_id)
