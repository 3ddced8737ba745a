"""`quotaledger watch`, `status`, `history` and `notify-test`: the balance monitor (SPEC §7)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from quotaledger.cli.exits import Exit
from quotaledger.monitor import event_loop
from quotaledger.monitor.config import AccountConfig, WatchConfig, load_config
from quotaledger.monitor.history import History, Poll, StateFileError, default_state_path
from quotaledger.monitor.tomlsource import ConfigError

if TYPE_CHECKING:
    from quotaledger.monitor.metrics import MonitorMetrics
    from quotaledger.monitor.watcher import Result
    from quotaledger.settings import Secret

_STATE_HELP = (
    "SQLite file of the poll history and alert states "
    f"[default: monitor.sqlite3 in the user data directory, here {default_state_path()}]."
)
config_option = click.option(
    "--config", "-c", "config_path", required=True, envvar="QUOTALEDGER_WATCH_CONFIG",
    show_envvar=True, type=click.Path(path_type=Path, dir_okay=False),
    help="The watch.toml file.",
)  # fmt: skip
state_option = click.option(
    "--state", "state_path", envvar="QUOTALEDGER_STATE", show_envvar=True,
    type=click.Path(path_type=Path, dir_okay=False), default=None, help=_STATE_HELP,
)  # fmt: skip


def fail(message: str, code: Exit) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load(path: Path, *, check_urls: bool) -> WatchConfig:
    """The config, or exit 2 with file:line: reason."""
    check: Callable[[str], str | None] | None = None
    if check_urls:
        from quotaledger.monitor.notify import check_url

        check = check_url
    try:
        return load_config(path, check_url=check)
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)


def now() -> datetime:
    return datetime.now(UTC)


@click.command()
@config_option
@state_option
@click.option("--once", is_flag=True, help="Poll every account once, now, notify, and exit (cron).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus /metrics.")
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for /metrics."
)
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def watch(
    config_path: Path, state_path: Path | None, once: bool,
    metrics_port: int | None, metrics_host: str, quiet: bool,
) -> None:  # fmt: skip
    """Poll balances and send alerts through Apprise URLs.

    Runs until stopped (SIGINT/SIGTERM), polling each account at its interval; with --once,
    polls every account once and exits: cron runs and a long-running watcher behave the
    same, since the alert states are kept in the state file.

    \b
    Example:
        PROD_TOKEN=... quotaledger watch --config watch.toml --metrics-port 9464
    """
    from quotaledger.monitor.tokens import resolve_keys, resolve_tokens
    from quotaledger.monitor.watcher import check_accounts

    if once and metrics_port is not None:
        fail("--metrics-port serves a long-running watcher; it cannot go with --once", Exit.USAGE)
    config = load(config_path, check_urls=True)
    try:
        tokens, keys = resolve_tokens(config), resolve_keys(config)
        check_accounts(config, tokens, keys)  # before the state file or the port is opened
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)
    level = logging.WARNING if quiet or once else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    state = state_path or default_state_path()
    with _metrics(metrics_port, metrics_host) as metrics, _open_state(state) as history:
        code = event_loop.run(_watch(config, (tokens, keys), history, metrics, once, quiet))
    sys.exit(code)


async def _watch(
    config: WatchConfig, secrets: tuple[Mapping[str, Secret], Mapping[str, Secret]],
    history: History, metrics: MonitorMetrics | None, once: bool, quiet: bool,
) -> int:  # fmt: skip
    from quotaledger.monitor.notify import Notifier
    from quotaledger.monitor.watcher import Watcher

    tokens, keys = secrets
    watcher = Watcher(config, tokens, history, Notifier(), metrics=metrics, keys=keys)
    try:
        async with watcher:
            if once:
                return _summarise(await watcher.poll_round(), quiet)
            await watcher.run(_stop_on_signals())
    except ConfigError as exc:  # a client refused an account's settings after all
        fail(str(exc), Exit.USAGE)
    return Exit.OK


@contextmanager
def _metrics(port: int | None, host: str) -> Iterator[MonitorMetrics | None]:
    if port is None:
        yield None
        return
    from quotaledger.monitor.metrics import MonitorMetrics

    metrics = MonitorMetrics()
    try:
        bound, stop = metrics.serve(port, host)
    except OSError as exc:  # in use, not an address of this machine, a privileged port...
        fail(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}", Exit.USAGE)
    logging.getLogger("quotaledger.monitor").info("metrics on http://%s:%d/metrics", host, bound)
    try:
        yield metrics
    finally:
        stop()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _summarise(results: list[Result], quiet: bool) -> int:
    from quotaledger.client.printable import printable
    from quotaledger.monitor.messages import balance_text

    undelivered = [
        r for r in results if r.alert is not None and not r.delivered and r.account.notify
    ]
    for result in results if not quiet else []:
        poll = result.outcome.poll
        detail = balance_text(poll) if poll.ok else f"poll failed: {printable(poll.error or '')}"
        sent = ""
        if result.delivered:
            sent = " (notified)"
        elif result.alert is not None and not result.account.notify:
            sent = " (not sent: notify = [])"
        click.echo(f"{result.account.name}: {result.record.state or 'PENDING'}, {detail}{sent}")
    for result in undelivered:
        click.echo(f"error: the alert for {result.account.name} was not delivered", err=True)
    return Exit.ERROR if undelivered else Exit.OK


@click.command()
@config_option
@state_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: Path, state_path: Path | None, as_json: bool) -> None:
    """Table of the watched accounts from the stored history (no polling).

    Balance, state, burn rate, when the money runs out, and a sparkline of the last polls.
    """
    from quotaledger.monitor import report

    config = load(config_path, check_urls=False)
    with _open_history(state_path) as history, _reading(history):
        statuses = report.collect(config, history, now())
    if as_json:
        click.echo(json.dumps(report.status_json(statuses, now()), indent=2))
    else:
        _print(report.status_table(statuses, now()))


@click.command()
@click.argument("name")
@config_option
@state_option
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Last N polls [default: 50 listed, all of them drawn].",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Draw the balance into an .svg/.png file.",
)
def history(
    name: str,
    config_path: Path,
    state_path: Path | None,
    limit: int | None,
    as_json: bool,
    plot: Path | None,
) -> None:
    """The stored polls of account NAME; --plot draws its balance over time."""
    from quotaledger.monitor import report

    config = load(config_path, check_urls=False)
    try:
        account = config.account(name)
    except KeyError as exc:
        fail(str(exc.args[0]), Exit.USAGE)
    with _open_history(state_path) as store, _reading(store):
        polls = store.polls(name, limit=limit or (None if plot else 50))
    if plot is not None:
        _plot(account, polls, plot)
    elif as_json:
        click.echo(json.dumps([report.poll_json(p) for p in polls], indent=2))
    else:
        _print(report.history_table(name, polls))


def _plot(account: AccountConfig, polls: list[Poll], path: Path) -> None:
    from quotaledger.monitor.plot import plot_balance

    try:
        click.echo(f"wrote {plot_balance(account, polls, path)}")
    except ValueError as exc:
        fail(str(exc), Exit.USAGE)


@click.command("notify-test")
@config_option
@click.option("--account", "account_name", help="Only this account's URLs.")
def notify_test(config_path: Path, account_name: str | None) -> None:
    """Send a test message to every notify URL of the config, one by one."""
    from quotaledger.monitor.notify import private_url

    config = load(config_path, check_urls=True)
    try:
        accounts = config.accounts if account_name is None else (config.account(account_name),)
    except KeyError as exc:
        fail(str(exc.args[0]), Exit.USAGE)
    urls = list(dict.fromkeys(url for account in accounts for url in account.notify))
    if not urls:
        fail(f"{config.path}: no notify URLs configured", Exit.USAGE)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    results = asyncio.run(_send_tests(urls))
    for url, ok in zip(urls, results, strict=True):
        click.echo(f"{'sent' if ok else 'FAILED'}  {private_url(url)}")
    sys.exit(Exit.OK if all(results) else Exit.ERROR)


async def _send_tests(urls: list[str]) -> list[bool]:
    from quotaledger.monitor.messages import test_message
    from quotaledger.monitor.notify import Notifier

    notifier = Notifier()
    return [await notifier.send([url], test_message(now())) for url in urls]


def _open_state(path: Path) -> History:
    """The state file, created if need be, or exit 2 naming the path and the reason."""
    try:
        return History(path)
    except StateFileError as exc:
        fail(str(exc), Exit.USAGE)


def _open_history(state_path: Path | None) -> History:
    try:
        return History(state_path or default_state_path(), create=False)
    except FileNotFoundError as exc:
        fail(str(exc), Exit.ERROR)
    except StateFileError as exc:
        fail(str(exc), Exit.USAGE)


@contextmanager
def _reading(history: History) -> Iterator[None]:
    """Exit 2 naming the state file if it cannot be read (damaged, another program's)."""
    import sqlite3

    try:
        yield
    except sqlite3.Error as exc:
        fail(f"cannot read the state file {history.path}: {exc}", Exit.USAGE)


def _print(renderable: Any) -> None:
    from rich.console import Console

    Console().print(renderable)
