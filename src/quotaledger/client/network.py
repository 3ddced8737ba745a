"""The HTTP libraries' answers and failures in the client's terms: a `Reply`, or an error
that names the host and says what went wrong. httpx serves `BalanceClient`, aiohttp
`AsyncBalanceClient`; both failures read the same."""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    import aiohttp

from quotaledger.client.errors import NetworkError, ProviderError
from quotaledger.client.redaction import without_userinfo


def unusable_response(exc: httpx.RequestError, url: str) -> ProviderError:
    """An answer httpx could not read: a body that is not the gzip it claims, a redirect loop."""
    host = urlsplit(url).netloc
    if isinstance(exc, httpx.DecodingError):
        return ProviderError(f"{host} sent a garbled compressed body ({url}): {exc}")
    return ProviderError(
        f"{host} answered in a way we cannot follow ({url}): {without_userinfo(str(exc))}"
    )


def network_error(
    exc: httpx.TransportError, url: str, timeout: float, attempts: int
) -> NetworkError:
    return _network_error(
        url,
        timeout,
        attempts,
        timed_out=isinstance(exc, httpx.TimeoutException),
        hung_up=isinstance(exc, httpx.RemoteProtocolError),
        causes=_os_errors(exc),
        detail=str(exc) or type(exc).__name__,
    )


def aiohttp_network_error(
    exc: aiohttp.ClientError | TimeoutError, url: str, timeout: float, attempts: int
) -> NetworkError:
    import aiohttp

    causes = _os_errors(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        causes.append(exc.os_error)
    return _network_error(
        url,
        timeout,
        attempts,
        timed_out=isinstance(exc, TimeoutError),
        hung_up=isinstance(exc, aiohttp.ServerDisconnectedError),
        causes=causes,
        detail=str(exc) or type(exc).__name__,
    )


def is_unusable(exc: aiohttp.ClientError) -> bool:
    """An answer that came whole but cannot be used (asking again would not help): a body
    that is not the compression it claims, a redirect loop. A body cut short is not: that
    is a network failure, retried."""
    import aiohttp
    from aiohttp.http_exceptions import ContentEncodingError

    if isinstance(exc, aiohttp.ClientPayloadError):
        return isinstance(exc.__cause__, ContentEncodingError)
    return isinstance(exc, aiohttp.TooManyRedirects)


def aiohttp_unusable_response(exc: aiohttp.ClientError, url: str) -> ProviderError:
    """The `ProviderError` for an answer `is_unusable` says cannot be used."""
    import aiohttp

    host, detail = urlsplit(url).netloc, without_userinfo(str(exc))
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderError(f"{host} sent a garbled compressed body ({url}): {detail}")
    return ProviderError(f"{host} answered in a way we cannot follow ({url}): {detail}")


def _network_error(
    url: str,
    timeout: float,
    attempts: int,
    *,
    timed_out: bool,
    hung_up: bool,
    causes: list[OSError],
    detail: str,
) -> NetworkError:
    host = urlsplit(url).netloc
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    if timed_out:
        return NetworkError(f"{host} did not answer within {timeout:g} s{tries}.")
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return NetworkError(
            f"cannot connect to {host}: connection refused{tries}. "
            "Is the server running, and is the base URL right?"
        )
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return NetworkError(f"cannot find the host {urlsplit(url).hostname} (DNS){tries}.")
    if tls := [cause for cause in causes if isinstance(cause, ssl.SSLError)]:
        return NetworkError(f"TLS with {host} failed{tries}: {tls[0]}.")
    if hung_up:
        return NetworkError(
            f"{host} closed the connection without an answer{tries}: {without_userinfo(detail)}."
        )
    return NetworkError(f"cannot reach {host}{tries}: {without_userinfo(detail)}.")


def _os_errors(exc: BaseException) -> list[OSError]:
    """The operating system's errors under the HTTP libraries' wrappers."""
    found: list[OSError] = []
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            found.append(seen)
        seen = seen.__cause__ or seen.__context__
    return found
