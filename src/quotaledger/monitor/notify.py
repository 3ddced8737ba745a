"""Notifications through Apprise URLs: email, Slack, Telegram, Discord, DingTalk, WeCom,
Feishu, ntfy, Gotify, Bark, JSON webhooks and the rest of Apprise's list.

Apprise is imported on first use, with its plugins loaded once under a warning filter:
some plugins import deprecated stdlib modules, which is noise to the user (and an error in
a test run with warnings as errors).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from quotaledger.monitor.messages import Message
from quotaledger.monitor.state import State

log = logging.getLogger("quotaledger.monitor")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
NOTIFY_TIMEOUT = 30.0  # seconds for one message to all its URLs


@functools.cache
def apprise_module() -> Any:
    """The `apprise` module with its plugins loaded (quietly)."""
    import apprise

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        apprise.Apprise.instantiate("json://localhost")  # loads every plugin module now
    return apprise


def check_url(url: str) -> str | None:
    """Why `url` is not a usable Apprise URL, or None. Never repeats the URL: it may hold a
    password or a webhook secret."""
    match = _SCHEME.match(url.strip())
    if not match:
        return "not an Apprise URL (expected scheme://..., e.g. mailto://, slack://, json://)"
    apprise = apprise_module()
    scheme = match.group(1).lower()
    if scheme not in apprise.NotificationManager():
        return f"unknown Apprise scheme {scheme}:// (see https://appriseit.com/services/)"
    if apprise.Apprise.instantiate(url) is None:
        return f"invalid {scheme}:// URL: Apprise cannot use it (check its fields)"
    return None


def private_url(url: str) -> str:
    """The URL as Apprise shows it with secrets masked, for logs."""
    service = apprise_module().Apprise.instantiate(url)
    return str(service.url(privacy=True)) if service is not None else "(invalid URL)"


class Sender(Protocol):
    async def send(self, urls: Sequence[str], message: Message) -> bool: ...


class Notifier:
    """Sends a `Message` to a list of Apprise URLs."""

    def __init__(self) -> None:
        self._targets: dict[tuple[str, ...], Any] = {}

    async def send(self, urls: Sequence[str], message: Message) -> bool:
        """True if at least one URL accepted the message (so a retry would not spam those that
        did); failures are logged. With no URLs nothing is delivered: False."""
        if not urls:
            return False
        apprise = apprise_module()
        send = functools.partial(
            self._target(tuple(urls)).async_notify,
            body=message.body,
            title=message.title,
            notify_type=notify_type(apprise, message.level),
        )
        if _has_call_timeout(apprise):
            result = await send(timeout=NOTIFY_TIMEOUT)
        else:
            try:
                result = await asyncio.wait_for(send(), NOTIFY_TIMEOUT)
            except TimeoutError:
                result = False
        accepted = accepted_count(result, len(urls))
        if accepted < len(urls):
            log.error(
                "notification not delivered to %d of %d URLs", len(urls) - accepted, len(urls)
            )
        return accepted > 0

    def _target(self, urls: tuple[str, ...]) -> Any:
        if urls not in self._targets:
            apprise = apprise_module()
            target = apprise.Apprise()
            for url in urls:
                target.add(url)
            self._targets[urls] = target
        return self._targets[urls]


@functools.cache
def _has_call_timeout(apprise: Any) -> bool:
    """Apprise 2 takes `timeout=` and returns an `AppriseResult`; Apprise 1 answers an unknown
    `timeout=` with False (every notification "failed"), so it gets `asyncio.wait_for`."""
    try:
        return "timeout" in inspect.signature(apprise.Apprise.notify).parameters
    except (TypeError, ValueError):
        return False


def accepted_count(result: Any, urls: int) -> int:
    """How many of `urls` accepted a message, from what `async_notify` returned: Apprise 2's
    `AppriseResult` (one entry per service contacted), or a plain `bool`/`None` as Apprise 1
    returns (all or nothing, as far as it tells)."""
    if result is None or isinstance(result, bool):
        return urls if result else 0
    try:
        return sum(1 for service in result if bool(service))
    except TypeError:  # neither: trust its truth value
        return urls if bool(result) else 0


def notify_type(apprise: Any, level: State) -> Any:
    kinds = {
        State.OK: apprise.NotifyType.SUCCESS,
        State.WARNING: apprise.NotifyType.WARNING,
        State.CRITICAL: apprise.NotifyType.FAILURE,
        State.UNKNOWN: apprise.NotifyType.FAILURE,
    }
    return kinds[level]
