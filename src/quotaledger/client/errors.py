"""Every way asking for a balance can fail, as one tree of exceptions.

    BalanceError                 the base: a message a person can act on
    ├── ConfigurationError       no token, a bad base URL, an unknown provider (also ValueError)
    ├── AuthenticationError      HTTP 401, or a one-api "HTTP 200, success: false" about the token
    │   └── MistypedTokenError   a quotaledger token whose checksum is wrong (also a
    │                            ConfigurationError: nothing was sent)
    ├── PermissionDeniedError    HTTP 403: valid token, but not allowed (a disabled account)
    ├── RateLimitedError         HTTP 429, with `retry_after` in seconds when the server says
    ├── ProviderError            an answer we cannot use: HTML, garbage, 404, 5xx after retries
    └── NetworkError             no answer: connection refused, DNS, TLS, timeout

Messages never contain the token: the client removes it before raising.
"""

from __future__ import annotations

from quotaledger.client.redaction import redact


class BalanceError(Exception):
    """Getting a balance failed; `str(error)` says why and what to do."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message

    def redact(self, secret: str) -> None:
        """Remove `secret` from the message (a server may echo the token it refused)."""
        scrubbed = redact(self.message, secret)
        if scrubbed != self.message:
            self.message = scrubbed
            self.args = (self.message,)


class ConfigurationError(BalanceError, ValueError):
    """The client cannot be used as configured; nothing was sent."""


class AuthenticationError(BalanceError):
    """The server refused the token: missing, mistyped, revoked or replaced."""


class MistypedTokenError(AuthenticationError, ConfigurationError):
    """A `ql_` token whose checksum does not match, caught before it is sent: the token is
    wrong (an authentication failure), and the client refuses it as configured."""


class PermissionDeniedError(BalanceError):
    """The token is valid but may not read the balance (for example a disabled account)."""


class RateLimitedError(BalanceError):
    """Too many balance queries; `retry_after` is the server's advice in seconds, if any."""

    def __init__(
        self, message: str, *, status_code: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class ProviderError(BalanceError):
    """The server answered, but not with a balance we understand."""


class NetworkError(BalanceError):
    """No usable answer reached us: refused connection, DNS, TLS, timeout."""
