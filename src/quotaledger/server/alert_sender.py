"""Sending users' alerts (issue 26): only URLs the policy allows (`alerting.targets`), each
connection checked on the address it is made to (`alerting.egress`).

Each URL's Apprise plugin is called in one worker thread, in turn, inside `egress.guarded`,
rather than through `Apprise.async_notify`, whose own thread pool is shared with any other
Apprise user in the process: the guard then covers every connection the send makes,
redirects included, and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from quotaledger.alerting import egress
from quotaledger.alerting.targets import AlertPolicy
from quotaledger.monitor.messages import Message
from quotaledger.monitor.notify import NOTIFY_TIMEOUT, apprise_module, notify_type

log = logging.getLogger("quotaledger.alerting.alerts")


class AlertSender:
    """`monitor.notify.Notifier`'s `send`, under the server's policy for users' URLs."""

    def __init__(self, policy: AlertPolicy) -> None:
        self.policy = policy

    async def send(self, urls: Sequence[str], message: Message) -> bool:
        """True if at least one URL accepted `message`. URLs the policy refuses are not
        tried; failures are logged by count only (a URL is a secret)."""
        usable = [url for url in urls if self.policy.refusal(url) is None]
        if len(usable) < len(urls):
            log.warning("alerts: %d URL(s) not allowed here, not sent", len(urls) - len(usable))
        accepted = 0
        if usable:
            try:
                accepted = await asyncio.wait_for(
                    run_in_threadpool(self._send_all, usable, message), NOTIFY_TIMEOUT
                )
            except TimeoutError:
                accepted = 0
        if accepted < len(urls):
            log.error("notification not delivered to %d of %d URLs", len(urls) - accepted,
                      len(urls))  # fmt: skip
        return accepted > 0

    def _send_all(self, urls: list[str], message: Message) -> int:
        apprise = apprise_module()
        with egress.guarded(self.policy.egress):
            return sum(1 for url in urls if _send_one(apprise, url, message))


def _send_one(apprise: Any, url: str, message: Message) -> bool:
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return False
    kind = notify_type(apprise, message.level)
    try:
        return bool(plugin.notify(body=message.body, title=message.title, notify_type=kind))
    except Exception as exc:  # a plugin's own bug: one URL failed, not the round
        log.warning("alerts: a plugin failed (%s)", type(exc).__name__)
        return False
