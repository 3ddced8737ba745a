"""Password hashing with argon2id.

Parameters: OWASP's first recommendation for argon2id (m=19 MiB, t=2, p=1) raised to
m=46 MiB, t=1 (the listed equivalent, a bit stronger), 16-byte salt, 32-byte hash.
Hashing is CPU-bound (~30-60 ms): the server calls these functions in a worker thread.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 1024  # hashing a megabyte-long "password" is a cheap DoS

_hasher = PasswordHasher(time_cost=1, memory_cost=47_104, parallelism=1, type=Type.ID)


def check_password_rules(password: str) -> str | None:
    """None if acceptable, else the reason it is refused."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work verification: with no hash (unknown user) a dummy hash is checked, so
    the time taken does not reveal whether the account exists."""
    if len(password) > MAX_LENGTH:
        password = password[:MAX_LENGTH]  # still do the work; the result is False anyway
        password_hash = None
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def random_password() -> str:
    """A random password to print once (first admin, `user create` without a password)."""
    return secrets.token_urlsafe(18)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))
