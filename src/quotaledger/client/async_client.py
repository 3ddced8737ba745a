"""`AsyncBalanceClient`: the same as `BalanceClient`, for asyncio (or trio) code."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from quotaledger.client.balance import Balance
from quotaledger.client.config import ClientConfig, default_headers
from quotaledger.client.errors import BalanceError
from quotaledger.client.exchange import Call, Reply
from quotaledger.client.network import network_error, to_reply, unusable_response
from quotaledger.client.providers import Provider
from quotaledger.client.redaction import without_secrets

if TYPE_CHECKING:
    from quotaledger.client.shared import SharedReplies

log = logging.getLogger("quotaledger.client")


class AsyncBalanceClient:
    """Ask one account's balance without blocking; see `BalanceClient` for the arguments.

    >>> async with AsyncBalanceClient("https://api.example.com", token) as client:  # doctest: +SKIP
    ...     print((await client.balance()).usd)

    Many clients of one program can share `http_client` (one connection pool) and
    `shared_replies` (a `quotaledger.client.shared.SharedReplies`: what is the same for every
    account of a site, such as new-api's `/api/status`, is then asked once for all of them).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        provider: str | Provider = "newapi",
        timeout: float = 10.0,
        retries: int = 2,
        user_id: str | int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float | None = None,
        http_client: httpx.AsyncClient | None = None,
        shared_replies: SharedReplies | None = None,
    ) -> None:
        self._config = ClientConfig.build(
            base_url,
            token,
            provider=provider,
            timeout=timeout,
            retries=retries,
            user_id=user_id,
            backoff=backoff,
        )
        # A caller polling many accounts passes one shared `http_client` (one connection
        # pool, one TLS context: building those costs ~1 MB and tens of ms per client).
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            headers=default_headers(), timeout=timeout, transport=transport, follow_redirects=True
        )
        self._shared = shared_replies
        # Built once: a client is asked again and again (the watcher: every poll).
        self._headers = {
            authenticated: {**default_headers(), **self._config.headers(Call("", authenticated))}
            for authenticated in (True, False)
        }

    @property
    def provider(self) -> str:
        return self._config.provider.name

    @property
    def base_url(self) -> str:
        return self._config.site.base_url

    async def balance(self) -> Balance:
        """The account's balance now; a `BalanceError` if it cannot be had."""
        plan = self._config.provider.plan(self._config.site)
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._send(call))
        except StopIteration as done:
            result: Balance = done.value
            return without_secrets(result, self._config.token)
        except BalanceError as error:
            error.redact(self._config.token)
            raise

    async def _send(self, call: Call) -> Reply:
        if call.shared and not call.authenticated and self._shared is not None:
            url, secret = self._config.url(call), self._config.token
            return await self._shared.get(url, secret, lambda: self._ask(call))
        return await self._ask(call)

    async def _ask(self, call: Call) -> Reply:
        config = self._config
        url, headers = config.url(call), self._headers[call.authenticated]
        attempts = 1 if call.best_effort else config.policy.attempts
        for attempt in range(1, attempts + 1):
            try:
                response = await self._http.get(url, headers=headers, timeout=config.timeout)
                reply = to_reply(response, config.token)
            except httpx.TransportError as exc:
                if call.best_effort:
                    return Reply.failed(url)
                if attempt == attempts:
                    raise network_error(exc, url, config.timeout, attempts) from None
                reason = type(exc).__name__
            except httpx.RequestError as exc:
                raise unusable_response(exc, url) from None
            else:
                if attempt == attempts or not config.policy.should_retry(reply):
                    return reply
                reason = f"HTTP {reply.status}"
            delay = config.policy.delay(attempt)
            log.info(
                "GET %s: %s; retry %d of %d in %.1f s", url, reason, attempt, attempts - 1, delay
            )
            await _sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncBalanceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncBalanceClient({self._config.describe()})"


async def _sleep(seconds: float) -> None:
    # anyio (an httpx dependency) sleeps under asyncio and trio alike; imported here so
    # that the synchronous CLI does not pay for it.
    import anyio

    await anyio.sleep(seconds)
