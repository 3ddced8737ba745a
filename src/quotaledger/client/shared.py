"""Answers that are the same for every account of a site, asked once for many clients.

new-api publishes `quota_per_unit` at `GET /api/status`: one unauthenticated answer per
server, whoever asks. A program polling many accounts of one relay (the watcher) hands one
`SharedReplies` to all its `AsyncBalanceClient`s, and the site is asked once for all of
them instead of once per account:

    shared = SharedReplies()
    http = http_session()  # quotaledger.client.async_client
    clients = [AsyncBalanceClient(url, t, http_client=http, shared_replies=shared) for t in tokens]

Only calls a provider marks `shared` (and that carry no token) go through it, keyed by URL.
Concurrent askers wait for the one request under way. An answer is kept for good, except a
failed one (no answer, or a 5xx), which is kept only for `FAILURE_TTL` seconds or until
`forget_failures()`: a status page that is down costs one timeout per round, not one per
account, and is asked again at the next round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from quotaledger.client.exchange import Reply

FAILURE_TTL = 60.0
"""Seconds a failed shared answer stands in for a new request (see `forget_failures`)."""


class SharedReplies:
    """Replies to shared calls, by URL, for every client given this object (async only)."""

    def __init__(self) -> None:
        self._replies: dict[str, tuple[Reply, float | None]] = {}  # reply, expiry if failed
        self._pending: dict[str, asyncio.Event] = {}

    async def get(self, url: str, secret: str, fetch: Callable[[], Awaitable[Reply]]) -> Reply:
        """The kept reply for `url`, else the one `fetch()` gets (once, however many ask at
        the same time); handed out with `secret` (the asking client's token, for redaction)."""
        while True:
            kept = self._kept(url)
            if kept is not None:
                return kept.with_secret(secret)
            pending = self._pending.get(url)
            if pending is None:
                break
            await pending.wait()  # then use what it got; if it raised, ask ourselves
        done = self._pending[url] = asyncio.Event()
        try:
            reply = await fetch()
            failed = reply.status == 0 or reply.status >= 500
            expiry = time.monotonic() + FAILURE_TTL if failed else None
            # Kept without the token of the client that happened to ask (none was sent).
            self._replies[url] = (reply.with_secret(""), expiry)
        finally:
            del self._pending[url]
            done.set()
        return reply

    def forget_failures(self) -> None:
        """Ask again, at the next call, what failed so far (a watcher's next round)."""
        for url in [url for url, (_, expiry) in self._replies.items() if expiry is not None]:
            del self._replies[url]

    def _kept(self, url: str) -> Reply | None:
        kept = self._replies.get(url)
        if kept is None:
            return None
        reply, expiry = kept
        if expiry is not None and time.monotonic() >= expiry:
            del self._replies[url]
            return None
        return reply
