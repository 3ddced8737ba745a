"""Domain errors. The domain raises these; the HTTP server and the CLI each translate them
in one place (`server/errors.py`, `cli/common.py`).

    QuotaLedgerError
    ├── InvalidInput            bad field value                (HTTP 422, exit 2)
    ├── NotFound                unknown user or model          (HTTP 404, exit 1)
    ├── AlreadyExists           username taken                 (HTTP 409, exit 1)
    ├── AuthenticationFailed    bad password, bad token        (HTTP 401, exit 3)
    ├── PermissionDenied        disabled, not admin            (HTTP 403, exit 4)
    ├── InsufficientQuota       charge above the balance       (HTTP 402, exit 1)
    ├── RateLimited             over a rate limit (SPEC §12)   (HTTP 429, or 503 when the
    │                           shared counters are unreachable; with Retry-After)
    ├── IdempotencyConflict     request_id reused, new payload (HTTP 409, exit 1)
    ├── NotConfigured           a needed setting is missing or wrong, e.g. no
    │                           QUOTALEDGER_SECRET_KEY for channel keys (HTTP 503, exit 2)
    └── Busy                    nothing was done: retry        (HTTP 503, exit 1)
        ├── DatabaseBusy        the write lock stayed taken
        ├── PasswordChecksBusy  every password-hashing slot stayed taken
        └── NoChannelAvailable  every channel serving the model is disabled or cooling
"""

from __future__ import annotations


class QuotaLedgerError(Exception):
    """Base of every domain error; `str(error)` is a message safe to show a user."""


class InvalidInput(QuotaLedgerError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(QuotaLedgerError):
    pass


class AlreadyExists(QuotaLedgerError):
    pass


class AuthenticationFailed(QuotaLedgerError):
    pass


class PermissionDenied(QuotaLedgerError):
    pass


class InsufficientQuota(QuotaLedgerError):
    def __init__(self, cost: int, available: int, funding: str | None = None) -> None:
        # `funding` names what could not cover it on the relay: "the account",
        # "this API key", "this API key's daily limit"...
        where = f" in {funding}" if funding else ""
        super().__init__(
            f"insufficient quota: this request costs {cost:,} quota, {available:,} remain{where}"
        )
        self.cost = cost
        self.available = available
        self.funding = funding


class IdempotencyConflict(QuotaLedgerError):
    pass


class RateLimited(QuotaLedgerError):
    """Over a rate limit: retry in `retry_after` seconds. `status` is 429, or 503 when the
    limits cannot be checked (`QUOTALEDGER_LIMITS_FALLBACK=refuse` with Redis away)."""

    def __init__(self, message: str, retry_after: int, status: int = 429) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class Busy(QuotaLedgerError):
    """A shared resource stayed taken past its wait: nothing was done; retry."""


class DatabaseBusy(Busy):
    """SQLite's write lock was not free within the busy timeout: nothing was written."""


class NotConfigured(QuotaLedgerError):
    """The server lacks a setting this needs (the message names it); nothing was changed."""


class PasswordChecksBusy(Busy):
    """Every password-hashing slot stayed taken past the wait (see `passwords`)."""


class NoChannelAvailable(Busy):
    """Every channel serving the model is out of rotation (disabled or cooling down by its
    health, SPEC §12): nothing went upstream."""
