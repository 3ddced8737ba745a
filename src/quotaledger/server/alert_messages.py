"""The words of the server's alerts: which account or key, the amount left in USD and quota,
the threshold crossed (or that it is back above them), in the monitor's `Message`."""

from __future__ import annotations

from quotaledger.alerting.states import OK, Found
from quotaledger.money import format_usd
from quotaledger.monitor.messages import Message
from quotaledger.monitor.state import State


def _dollars(quota: int) -> str:
    usd = format_usd(quota)
    return f"-${usd[1:]}" if usd.startswith("-") else f"${usd}"


def _what(found: Found) -> str:
    if found.subject.startswith("key:"):
        return f'API key "{found.name}"'
    return f"Account {found.name}"


def _amount(found: Found) -> str:
    left = f"{_dollars(found.amount)} ({found.amount:,} quota)"
    return f"{left} of its budget left" if found.subject.startswith("key:") else f"balance {left}"


def compose(found: Found, level: str, previous: str) -> Message:
    """The message telling that `found` is at `level` now (it was at `previous`)."""
    what, state = _what(found), State(level)
    if level == OK:
        title = f"RESOLVED: {what} is back above its alert thresholds"
        body = f"{what}: {_amount(found)}, above its thresholds again (was {previous})."
        return Message(title, body, state)
    threshold = found.thresholds.critical if level == "CRITICAL" else found.thresholds.warn
    crossed = "" if threshold is None else f", at or below the {level.lower()} threshold "
    crossed += "" if threshold is None else f"of {_dollars(threshold)}"
    title = f"{level}: {what} is running low"
    body = f"{what}: {_amount(found)}{crossed}."
    return Message(title, body, state)


def test_message(username: str) -> Message:
    title = "quotaledger: test notification"
    body = f"Alerts for account {username} reach this address."
    return Message(title, body, State.OK)
