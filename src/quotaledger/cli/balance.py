"""`quotaledger balance` and `quotaledger check`: an account's balance from the command line,
for people, for scripts (`--json`, exit codes) and for Nagios-style monitoring (`check`).

Only the client is imported here, never the server stack, so that both start fast.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from decimal import Decimal
from enum import IntEnum
from typing import IO, Any, TypeVar

import click

from quotaledger.cli.exits import Exit
from quotaledger.client import (
    PROVIDERS,
    AuthenticationError,
    Balance,
    BalanceClient,
    BalanceError,
    ConfigurationError,
    KeyBalance,
    NetworkError,
    PermissionDeniedError,
    RateLimitedError,
)
from quotaledger.client.balance import format_money, truncate_cents
from quotaledger.client.config import TOKEN_ENV
from quotaledger.client.printable import printable
from quotaledger.money import parse_usd

F = TypeVar("F", bound=Callable[..., Any])
KEY_PROVIDER = "newapi-key"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

EXIT_CODES: dict[type[BalanceError], Exit] = {
    ConfigurationError: Exit.USAGE,
    AuthenticationError: Exit.AUTHENTICATION,
    PermissionDeniedError: Exit.PERMISSION,
    NetworkError: Exit.NETWORK,
    RateLimitedError: Exit.RATE_LIMITED,
}
"""Every other `BalanceError` (an answer we cannot use) is `Exit.UNEXPECTED`."""


def exit_code(error: BalanceError) -> Exit:
    """The code of the error's nearest class in `EXIT_CODES`: a `MistypedTokenError` is an
    `AuthenticationError` first (exit 3), a `ConfigurationError` second."""
    return next(
        (EXIT_CODES[kind] for kind in type(error).__mro__ if kind in EXIT_CODES),
        Exit.UNEXPECTED,
    )


class State(IntEnum):
    """Monitoring-plugin states, which are also `check`'s exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


def amount_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    """Option callback (any Click 8): a non-negative amount, or a usage error."""
    if value is None:
        return None
    try:
        return parse_usd(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def connection_options(command: F) -> F:
    """The options `balance` and `check` share: where to ask, with which token, how patiently."""
    options = [
        click.option(
            "--base-url",
            envvar="QUOTALEDGER_BASE_URL",
            metavar="URL",
            show_envvar=True,
            help="Site root, e.g. https://api.example.com. "
            "Default: the provider's own site (newapi has none).",
        ),
        click.option(
            "--provider",
            envvar="QUOTALEDGER_PROVIDER",
            default="newapi",
            show_default=True,
            type=click.Choice(list(PROVIDERS), case_sensitive=False),
            show_envvar=True,
            help="Which balance API the site speaks.",
        ),
        click.option(
            "--token-file",
            envvar="QUOTALEDGER_TOKEN_FILE",
            type=click.File("r"),
            metavar="FILE",
            show_envvar=True,
            help=f"Read the token from FILE ('-': stdin); otherwise "
            f"from {TOKEN_ENV}. There is no --token: the command line is visible to "
            "other users and stays in shell history.",
        ),
        click.option(
            "--key-env",
            metavar="VAR",
            help="Show one API key's own balance (GET /api/usage/token, quotaledger and "
            "new-api relays): the key (sk-...) is read from the environment variable VAR. "
            "Implies --provider newapi-key.",
        ),
        click.option(
            "--key-file",
            type=click.File("r"),
            metavar="FILE",
            help="As --key-env, the key read from FILE ('-': stdin).",
        ),
        click.option(
            "--user-id",
            envvar="QUOTALEDGER_USER_ID",
            metavar="ID",
            show_envvar=True,
            help="Your numeric user id, sent as New-Api-User (new-api wants it).",
        ),
        click.option(
            "--timeout",
            envvar="QUOTALEDGER_TIMEOUT",
            default=10.0,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            show_envvar=True,
            help="Deadline for each attempt as a whole (connecting, waiting, reading), "
            "not for each read; a retry gets as long again.",
        ),
        click.option(
            "--retries",
            envvar="QUOTALEDGER_RETRIES",
            default=2,
            show_default=True,
            type=click.IntRange(0, 10),
            metavar="N",
            show_envvar=True,
            help="Retry network errors and 5xx this many times (4xx never).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def fetch(
    base_url: str | None,
    provider: str,
    token_file: IO[str] | None,
    user_id: str | None,
    timeout: float,
    retries: int,
    key_env: str | None = None,
    key_file: IO[str] | None = None,
) -> Balance:
    """The balance (a `KeyBalance` with --key-env/--key-file), or a `BalanceError`."""
    key = read_key(key_env, key_file)
    if key is not None:
        credential, provider = key, key_provider(provider)
    else:
        credential = account_token(token_file)
    with BalanceClient(
        base_url,
        credential,
        provider=provider,
        timeout=timeout,
        retries=retries,
        user_id=user_id or None,
    ) as client:
        return client.balance()


def account_token(token_file: IO[str] | None) -> str:
    token = read_token(token_file) if token_file else os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        where = f"the token file {token_file.name} is empty" if token_file else "no token"
        raise ConfigurationError(f"{where}: set {TOKEN_ENV} or pass --token-file FILE")
    return token


def has_account_token(token_file: IO[str] | None) -> bool:
    return token_file is not None or bool(os.environ.get(TOKEN_ENV, "").strip())


def read_key(key_env: str | None, key_file: IO[str] | None) -> str | None:
    """The API key of --key-env or --key-file; `None` if neither was given."""
    if key_env is not None and key_file is not None:
        raise ConfigurationError("give --key-env or --key-file, not both")
    if key_file is not None:
        key = read_token(key_file)
        if not key:
            raise ConfigurationError(f"the key file {key_file.name} is empty")
        return key
    if key_env is None:
        return None
    if not _ENV_NAME.fullmatch(key_env):
        # Never echoed: a key pasted where its variable's name belongs must not be printed.
        raise ConfigurationError(
            "--key-env takes the name of an environment variable that holds the key "
            "(e.g. --key-env LAPTOP_KEY), not the key itself"
        )
    key = os.environ.get(key_env, "").strip()
    if not key:
        raise ConfigurationError(f"the environment variable {key_env} is not set or empty")
    return key


def key_provider(provider: str) -> str:
    """--key-env reads `newapi-key`; a provider that has no per-key balance is refused."""
    if provider.lower() in {"newapi", KEY_PROVIDER}:
        return KEY_PROVIDER
    raise ConfigurationError(
        f"--key-env/--key-file read GET /api/usage/token of quotaledger and new-api relays; "
        f"provider {provider!r} has no per-key balance"
    )


def read_token(token_file: IO[str]) -> str:
    try:
        return token_file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the token file {token_file.name}: {exc}") from None


BALANCE_EPILOG = """\b
Examples:
  read -rs QUOTALEDGER_TOKEN && export QUOTALEDGER_TOKEN   # paste, unseen
  quotaledger balance --base-url https://api.example.com
  $49.99 left (24,997,909 quota) · used $0.00 · 12 requests · group default
\b
  quotaledger balance --base-url https://relay.example.com --user-id 42
  quotaledger balance --provider openrouter --token-file ~/.openrouter-key
  quotaledger balance --base-url https://api.example.com --json | jq -r .usd
\b
  # one API key's own balance (quotaledger or a new-api relay)
  quotaledger balance --base-url https://api.example.com --key-env LAPTOP_KEY
  $4.20 left of $5.00 on key laptop (2,100,000 quota) · used $0.80
\b
Exit status: 0 ok, 2 usage or configuration error, 3 token refused,
4 permission denied, 5 network error or timeout, 6 rate limited,
7 unexpected answer (HTML, garbage, server error, over 1 MiB).
"""


@click.command(epilog=BALANCE_EPILOG)
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (amounts as exact strings).")
@click.pass_context
def balance(ctx: click.Context, /, as_json: bool, **connection: Any) -> None:
    """Show an account's balance: what is left, what was used, and how many requests;
    or, with --key-env/--key-file, one API key's own balance."""
    try:
        result = fetch(**connection)
        if as_json:
            text = json.dumps(balance_json(result), indent=2, ensure_ascii=False, default=_raw)
        else:
            text = describe(result)
    except BalanceError as error:
        code = exit_code(error)
        report_error(str(error), type(error).__name__, as_json)
        ctx.exit(code)
    except Exception as error:  # a bug; still one line, never a traceback
        report_error(f"internal error ({type(error).__name__}: {error})", "InternalError", as_json)
        ctx.exit(Exit.ERROR)
    click.echo(text if as_json else printable(text))  # JSON escapes control characters


def report_error(message: str, kind: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False))
    else:
        click.echo(f"Error: {printable(message)}", err=True)


def describe(result: Balance) -> str:
    """`$49.99 left (24,997,909 quota) · used $0.00 · 12 requests · group default`."""
    if isinstance(result, KeyBalance):
        return describe_key(result)
    left = f"{result.format_amount()} left"
    if result.quota is not None:
        left += f" ({result.quota:,} quota)"
    parts = [left]
    if (used := result.format_used()) is not None:
        parts.append(f"used {used}")
    if (count := result.request_count) is not None:
        parts.append(f"{count:,} request{'' if count == 1 else 's'}")
    if result.group:
        parts.append(f"group {result.group}")
    return " · ".join(parts)


def describe_key(result: KeyBalance) -> str:
    """`$4.20 left of $5.00 on key laptop (2,100,000 quota) · used $0.80`; an unlimited key:
    `key laptop is unlimited (it spends its account's balance) · used $0.80`."""
    if result.unlimited:
        parts = [f"{result.label()} is unlimited (it spends its account's balance)"]
    else:
        left = f"{result.format_amount()} left"
        if result.granted_quota is not None and result.quota_per_unit:
            granted = Decimal(result.granted_quota) / result.quota_per_unit
            left += f" of {format_money(granted, result.currency)}"
        parts = [f"{left} on {result.label()} ({result.quota:,} quota)"]
    if (used := result.format_used()) is not None:
        parts.append(f"used {used}")
    if result.expires_at is not None:
        parts.append(f"expires {result.expires_at:%Y-%m-%d %H:%M} UTC")
    if result.models:
        parts.append("models " + ", ".join(result.models))
    return " · ".join(parts)


def key_json(result: KeyBalance) -> dict[str, Any]:
    unit = result.quota_per_unit
    granted = result.granted_quota
    return {
        "name": result.name,
        "unlimited": result.unlimited,
        "granted_quota": granted,
        "granted_usd": None if granted is None or not unit else str(Decimal(granted) / unit),
        "expires_at": None if result.expires_at is None else result.expires_at.isoformat(),
        "models": list(result.models),
    }


def balance_json(result: Balance) -> dict[str, Any]:
    def exact(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "provider": result.provider,
        "amount": exact(result.amount),
        "currency": result.currency,
        "usd": exact(result.usd),
        "quota": result.quota,
        "used_quota": result.used_quota,
        "request_count": result.request_count,
        "group": result.group,
        "used_amount": exact(result.used_amount),
        "used_usd": exact(result.used_usd),
        "quota_per_unit": result.quota_per_unit,
        "key": key_json(result) if isinstance(result, KeyBalance) else None,
        "raw": result.raw,
    }


def _raw(value: object) -> object:
    # The raw payload holds JSON numbers parsed as Decimal; give them back as numbers, as long
    # as they fit one (a number with thousands of digits, or beyond a float, stays text).
    if isinstance(value, Decimal):
        if value.is_finite() and value.adjusted() <= 40 and value == value.to_integral_value():
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class PluginCommand(click.Command):
    """A command that answers bad usage the monitoring-plugin way: UNKNOWN on stdout, exit 3
    (Click's usual exit 2 would read as CRITICAL)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            click.echo(f"BALANCE UNKNOWN - {plugin_text(error.format_message())}")
            raise click.exceptions.Exit(State.UNKNOWN) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Any unexpected failure is UNKNOWN too, in one line: never exit 1 (WARNING) with a
        traceback."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as error:
            unknown(f"internal error ({type(error).__name__}: {error})")
            raise click.exceptions.Exit(State.UNKNOWN) from None


CHECK_EPILOG = """\b
Examples:
  quotaledger check --base-url https://api.example.com --warn-usd 20 --critical-usd 5
  BALANCE OK - $49.99 left | balance_usd=49.99;20:;5:;0 quota=24997909;;;;
\b
  # Nagios / Icinga / Naemon command definition
  command_line  $USER1$/quotaledger check --token-file /etc/nagios/relay.token \\
                --base-url https://api.example.com --warn-usd 20 --critical-usd 5
\b
  # one API key: thresholds on what the key may still spend; an unlimited key
  # checks its account's balance when QUOTALEDGER_TOKEN is set too
  quotaledger check --base-url https://api.example.com --key-env LAPTOP_KEY \\
                    --warn-usd 2 --critical-usd 0.5
\b
Exit status (monitoring-plugin convention): 0 OK, 1 WARNING (at or below
--warn-usd), 2 CRITICAL (at or below --critical-usd), 3 UNKNOWN (no balance: any
error, bad usage). Thresholds are in the account's currency (CNY for
deepseek/siliconflow/moonshot .cn). Perfdata writes them as ranges where low is bad
(20:), as monitoring plugins read them.
"""


@click.command(cls=PluginCommand, epilog=CHECK_EPILOG)
@connection_options
@click.option(
    "--warn-usd",
    "--warn",
    "warn",
    envvar="QUOTALEDGER_WARN_USD",
    show_envvar=True,
    callback=amount_option,
    required=True,
    metavar="X",
    help="WARNING when the balance is at or below X.",
)
@click.option(
    "--critical-usd",
    "--critical",
    "critical",
    envvar="QUOTALEDGER_CRITICAL_USD",
    show_envvar=True,
    callback=amount_option,
    required=True,
    metavar="Y",
    help="CRITICAL when the balance is at or below Y (Y <= X).",
)
@click.pass_context
def check(ctx: click.Context, /, warn: Decimal, critical: Decimal, **connection: Any) -> None:
    """Monitoring-plugin check of a balance: one status line with perfdata."""
    if critical > warn:
        click.echo("BALANCE UNKNOWN - --critical-usd must not be above --warn-usd")
        ctx.exit(State.UNKNOWN)
    try:
        result = fetch(**connection)
        if isinstance(result, KeyBalance) and result.unlimited:
            state, line = unlimited_key_check(result, warn, critical, connection)
        else:
            state = judge(result.amount, warn, critical)
            line = status_line(state, result, warn, critical)
    except BalanceError as error:  # any failure to get a balance is UNKNOWN, in one line
        unknown(str(error))
        ctx.exit(State.UNKNOWN)
    except Exception as error:  # a bug: UNKNOWN as well (exit 1 would read as WARNING)
        unknown(f"internal error ({type(error).__name__}: {error})")
        ctx.exit(State.UNKNOWN)
    click.echo(line)
    ctx.exit(state)


def unlimited_key_check(
    key: KeyBalance, warn: Decimal, critical: Decimal, connection: dict[str, Any]
) -> tuple[State, str]:
    """An unlimited key spends its account's balance: that balance is checked when the
    account's token is at hand too, else the key is OK and the line says what to add."""
    if not has_account_token(connection["token_file"]):
        used = key.format_used() or "?"
        text = plugin_text(
            f"{key.label()} is unlimited, used {used}: it spends its account's balance "
            f"(set {TOKEN_ENV} or --token-file to check that)"
        )
        return State.OK, f"BALANCE OK - {text} | used_quota={key.used_quota};;;;"
    account_connection = {**connection, "key_env": None, "key_file": None, "provider": "newapi"}
    account = fetch(**account_connection)
    state = judge(account.amount, warn, critical)
    prefix = f"{plugin_text(key.label())} is unlimited; its account has "
    return state, status_line(state, account, warn, critical, prefix=prefix)


def unknown(reason: str) -> None:
    click.echo(f"BALANCE UNKNOWN - {plugin_text(reason)}")


def plugin_text(text: str) -> str:
    """Text for the human part of a plugin's status line: one line, and no `|`, which would
    start perfdata (a server's message must not forge metrics)."""
    return printable(text).replace("|", "/")


def judge(amount: Decimal, warn: Decimal, critical: Decimal) -> State:
    """At or below a threshold counts, as in `quotaledger watch`."""
    if amount <= critical:
        return State.CRITICAL
    if amount <= warn:
        return State.WARNING
    return State.OK


def status_line(
    state: State, result: Balance, warn: Decimal, critical: Decimal, *, prefix: str = ""
) -> str:
    """`BALANCE OK - $49.99 left | balance_usd=49.99;20:;5:;0 quota=24997909;;;;`; a key's
    `BALANCE OK - $4.20 left on key laptop | ...`.

    The thresholds are monitoring-plugin ranges: `20:` means "alert below 20" (a bare `20`
    would mean "alert above 20")."""
    text = f"BALANCE {state.name} - {prefix}{plugin_text(result.format_amount())} left"
    if isinstance(result, KeyBalance):
        text += f" on {plugin_text(result.label())}"
    if state is not State.OK:
        threshold = warn if state is State.WARNING else critical
        kind = "warning" if state is State.WARNING else "critical"
        text += f" ({kind} at or below {format_money(threshold, result.currency)})"
    amount = truncate_cents(result.amount)
    minimum = "0" if amount >= 0 else ""
    perfdata = [
        f"balance_{result.currency.lower()}={amount};{_plain(warn)}:;{_plain(critical)}:;{minimum}"
    ]
    if result.quota is not None:
        perfdata.append(f"quota={result.quota};;;;")
    return f"{text} | {' '.join(perfdata)}"


def _plain(number: Decimal) -> str:
    """`20` not `2E+1`, `20.5` not `20.50`."""
    return format(number.normalize(), "f")
