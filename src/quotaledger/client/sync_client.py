"""`BalanceClient`: the balance, synchronously, over httpx."""

from __future__ import annotations

import logging
import time
from types import TracebackType

import httpx

from quotaledger.client.balance import Balance
from quotaledger.client.body import BodyReader
from quotaledger.client.config import ClientConfig, default_headers
from quotaledger.client.deadline import check as check_deadline
from quotaledger.client.deadline import deadline, keep_deadlines
from quotaledger.client.errors import BalanceError, ConfigurationError
from quotaledger.client.exchange import Call, Reply
from quotaledger.client.key_balance import KeyBalance, as_key_balance
from quotaledger.client.network import network_error, unusable_response
from quotaledger.client.providers import Provider
from quotaledger.client.redaction import without_secrets

log = logging.getLogger("quotaledger.client")
MAX_REDIRECTS = 20  # as httpx


class BalanceClient:
    """Ask one account's balance, as often as needed, over one connection pool.

    >>> with BalanceClient("https://api.example.com", token) as client:  # doctest: +SKIP
    ...     print(client.balance().usd)

    `base_url` is the site root (`None`: the provider's default site); the token comes from
    `token` or `QUOTALEDGER_TOKEN`. `timeout` is a deadline for each attempt as a whole;
    network errors and 5xx are retried `retries` times, other answers never. An answer is
    read no further than `MAX_BODY_BYTES` (1 MiB) decompressed. Errors are `BalanceError`
    subclasses; none contains the token. A shared `http_client` should come from
    `http_client_with_deadlines()` (another keeps the deadline between a body's chunks only).
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
        transport: httpx.BaseTransport | None = None,
        backoff: float | None = None,
        http_client: httpx.Client | None = None,
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
        if http_client is not None:
            self._http = http_client
        elif transport is not None:  # the caller's own (a mock): no deadline below it
            self._http = httpx.Client(
                headers=default_headers(), transport=transport, follow_redirects=True
            )
        else:
            self._http = http_client_with_deadlines()

    @property
    def provider(self) -> str:
        return self._config.provider.name

    @property
    def base_url(self) -> str:
        return self._config.site.base_url

    def key_balance(self) -> KeyBalance:
        """`balance()` typed for a key (`provider="newapi-key"`): what the key may still
        spend, what it spent, whether it is unlimited; a `ConfigurationError` (before any
        request) for a provider that reads accounts."""
        if self._config.provider.credential != "key":
            raise ConfigurationError(
                f"provider {self.provider!r} reads an account's balance, not a key's: "
                'use provider="newapi-key" with the API key'
            )
        return as_key_balance(self.balance())

    def balance(self) -> Balance:
        """The account's balance now; a `BalanceError` if it cannot be had."""
        plan = self._config.provider.plan(self._config.site)
        try:
            call = next(plan)
            while True:
                call = plan.send(self._send(call))
        except StopIteration as done:
            result: Balance = done.value
            return without_secrets(result, self._config.token)
        except BalanceError as error:
            error.redact(self._config.token)
            raise

    def _send(self, call: Call) -> Reply:
        config = self._config
        url, headers = config.url(call), {**default_headers(), **config.headers(call)}
        attempts = 1 if call.best_effort else config.policy.attempts
        for attempt in range(1, attempts + 1):
            try:
                with deadline(config.timeout):  # the whole attempt, not each read
                    reply = self._get(url, headers)
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
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _get(self, url: str, headers: dict[str, str]) -> Reply:
        """One GET, redirects followed, the answer's body read within `MAX_BODY_BYTES`
        (decompressed) and the deadline. Redirects are followed here, not by httpx: it reads
        a redirect's body whole, and a hostile server's never ends."""
        request = self._http.build_request(
            "GET", url, headers=headers, timeout=self._config.timeout
        )
        for _ in range(MAX_REDIRECTS + 1):
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                if response.next_request is None:
                    return self._reply(response, url)
                request = response.next_request  # without Authorization to another origin
            finally:
                response.close()  # a redirect's body unread: its connection is not reused
        raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)

    def _reply(self, response: httpx.Response, url: str) -> Reply:
        body = BodyReader(response.headers.get("content-encoding", ""), url)
        for chunk in response.iter_raw():
            body.feed(chunk)
            check_deadline()
        content = body.finish()
        return Reply(
            response.status_code, response.headers, content, str(response.url), self._config.token
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> BalanceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BalanceClient({self._config.describe()})"


def http_client_with_deadlines(max_connections: int = 100) -> httpx.Client:
    """An HTTP client for `BalanceClient`s to share (`http_client=`), whose every request
    keeps its client's `timeout` as a deadline for the whole request. Proxies come from the
    environment (`HTTPS_PROXY`, `NO_PROXY`...)."""
    limits = httpx.Limits(max_connections=max_connections)
    return keep_deadlines(
        httpx.Client(headers=default_headers(), follow_redirects=True, limits=limits)
    )
