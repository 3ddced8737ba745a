"""`--usd X | --quota N`: the two ways to give an amount, one of them required."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from quotaledger.money import MAX_QUOTA, parse_usd, usd_to_quota


def amount_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--quota", type=click.IntRange(1, MAX_QUOTA), help="Amount in quota.")(
        function
    )
    return click.option("--usd", metavar="X", help="Amount in USD (500,000 quota = $1).")(function)


def amount_in_quota(usd: str | None, quota: int | None, *, required: bool) -> int:
    if usd is not None and quota is not None:
        raise click.UsageError("give --usd or --quota, not both")
    if quota is not None:
        return quota
    if usd is None:
        if required:
            raise click.UsageError("give an amount: --usd X or --quota N")
        return 0
    try:
        result = usd_to_quota(parse_usd(usd))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--usd") from None
    if result <= 0:
        raise click.BadParameter("amount must be at least one quota unit", param_hint="--usd")
    return result
