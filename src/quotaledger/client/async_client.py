"""`AsyncBalanceClient`: the same as `BalanceClient`, for asyncio code, over aiohttp.

Why not httpx here too: with requests in flight at once (the watcher's rounds), httpx's
async client spends several times the CPU of aiohttp per request (its connection pool and
anyio locks: encode/httpx#3215). Measured here: 1,000 balance queries at concurrency 4 took
550 ms with httpx, 84 ms with aiohttp and 77 ms with wrk (`benchmarks/README.md`). The
providers are sans-IO, so both clients share everything but the sending.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import certifi
import yarl

from quotaledger.client.balance import Balance
from quotaledger.client.body import BodyReader
from quotaledger.client.config import ClientConfig, default_headers
from quotaledger.client.errors import BalanceError, ConfigurationError
from quotaledger.client.exchange import Call, Reply
from quotaledger.client.key_balance import KeyBalance, as_key_balance
from quotaledger.client.network import (
    aiohttp_network_error,
    aiohttp_unusable_response,
    is_unusable,
)
from quotaledger.client.providers import Provider
from quotaledger.client.redaction import without_secrets

if TYPE_CHECKING:
    from quotaledger.client.shared import SharedReplies

log = logging.getLogger("quotaledger.client")


class AsyncBalanceClient:
    """Ask one account's balance without blocking; see `BalanceClient` for the arguments.

    >>> async with AsyncBalanceClient("https://api.example.com", token) as client:  # doctest: +SKIP
    ...     print((await client.balance()).usd)

    Many clients of one program can share `http_client` (one connection pool: make it with
    `http_session()`, and close it yourself) and `shared_replies` (a
    `quotaledger.client.shared.SharedReplies`: what is the same for every account of a site,
    such as new-api's `/api/status`, is then asked once for all of them).
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
        backoff: float | None = None,
        http_client: aiohttp.ClientSession | None = None,
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
        # Our own is made at the first request: aiohttp wants a running event loop.
        self._owns_http = http_client is None
        self._http = http_client
        self._closed = False
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._proxy = env_proxy(self._config.site.base_url)
        self._targets: dict[str, yarl.URL] = {}
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

    async def key_balance(self) -> KeyBalance:
        """`balance()` typed for a key (`provider="newapi-key"`): what the key may still
        spend, what it spent, whether it is unlimited; a `ConfigurationError` (before any
        request) for a provider that reads accounts."""
        if self._config.provider.credential != "key":
            raise ConfigurationError(
                f"provider {self.provider!r} reads an account's balance, not a key's: "
                'use provider="newapi-key" with the API key'
            )
        return as_key_balance(await self.balance())

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
        http, target = self._session(), self._targets.get(url)
        if target is None:  # parsed once: the watcher asks the same URL at every poll
            target = self._targets[url] = yarl.URL(url)
        for attempt in range(1, attempts + 1):
            try:
                get = http.get(target, headers=headers, timeout=self._timeout, proxy=self._proxy)
                async with get as response:  # `ClientTimeout(total=)`: a deadline for all of it
                    content = await _body(response, url)
                reply = Reply(
                    response.status, response.headers, content, str(response.url), config.token
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                if isinstance(exc, aiohttp.ClientError) and is_unusable(exc):
                    raise aiohttp_unusable_response(exc, url) from None
                if call.best_effort:
                    return Reply.failed(url)
                if attempt == attempts:
                    raise aiohttp_network_error(exc, url, config.timeout, attempts) from None
                reason = type(exc).__name__
            else:
                if attempt == attempts or not config.policy.should_retry(reply):
                    return reply
                reason = f"HTTP {reply.status}"
            delay = config.policy.delay(attempt)
            log.info(
                "GET %s: %s; retry %d of %d in %.1f s", url, reason, attempt, attempts - 1, delay
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this AsyncBalanceClient is closed")
        if self._http is None:
            self._http = http_session()
        return self._http

    async def aclose(self) -> None:
        self._closed = True
        if self._owns_http and self._http is not None:
            await self._http.close()

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


async def _body(response: aiohttp.ClientResponse, url: str) -> bytes:
    """The body, within `MAX_BODY_BYTES` once decompressed (aiohttp inflates in bounded
    steps, as we read)."""
    body = BodyReader("", url)
    async for chunk in response.content.iter_any():
        body.feed(chunk)
    return body.finish()


def http_session(max_connections: int = 100) -> aiohttp.ClientSession:
    """An HTTP session for `AsyncBalanceClient`s to share (call it in a running event loop).

    It keeps no cookies: one session serves every account, and a cookie one site sets must
    never go out with another account's token (ports do not separate cookies). Redirects
    are followed, and aiohttp drops `Authorization` when one leads to another origin.
    (Each client reads its proxy from the environment: `env_proxy`.)
    """
    # Mozilla's CA bundle (certifi), as httpx uses for `BalanceClient`: the same servers
    # are trusted by both clients, on systems without a CA store of their own too.
    tls = ssl.create_default_context(cafile=certifi.where())
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, ssl=tls),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (`https_proxy`, `http_proxy`, `all_proxy`,
    `no_proxy`; lower case first, an empty one meaning none), as urllib reads them; a proxy
    without a scheme is `http://` (as httpx takes it for `BalanceClient`).

    Read once per client, and only these few variables: aiohttp's `trust_env` (like
    `urllib.request.getproxies`) scans the whole environment at every request, and a
    watcher's environment holds a token variable per account (1,000 accounts: ~2 ms a scan).
    """
    parts = urlsplit(url)
    proxy = _env(f"{parts.scheme}_proxy") or _env("all_proxy")
    if not proxy or not parts.hostname:
        return None
    no_proxy = _env("no_proxy")
    if no_proxy and _bypassed(parts.hostname, parts.port, no_proxy):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """`no_proxy`: `*`, or entries (`example.com`, `.example.com`, `*.example.com`, with an
    optional `:port`) that name the host or a parent domain."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        name, _, wanted_port = entry.partition(":") if entry.count(":") == 1 else (entry, "", "")
        name = name.removeprefix("*").lstrip(".")
        if entry == "*":
            return True
        if wanted_port and wanted_port != str(port):
            continue
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _env(name: str) -> str | None:
    # Like urllib: lower case wins, even empty; HTTP_PROXY is ignored under CGI (httpoxy).
    if name in os.environ:
        return os.environ[name] or None
    if name == "http_proxy" and "REQUEST_METHOD" in os.environ:
        return None
    return os.environ.get(name.upper()) or None
