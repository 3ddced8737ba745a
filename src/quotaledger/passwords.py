"""Password hashing with argon2id.

Parameters: OWASP's first recommendation for argon2id (m=19 MiB, t=2, p=1) raised to
m=46 MiB, t=1 (the listed equivalent, a bit stronger), 16-byte salt, 32-byte hash.
Hashing is CPU-bound (~30-60 ms): the server calls these functions in a worker thread.

Each hash also takes 46 MiB while it runs, so hashes run at most `MAX_PARALLEL_HASHES` at
a time (the core count: more would not finish sooner), whoever calls: 20 concurrent logins
took the server from 85 MB to 807 MB when each ran at once. The others wait for a slot;
past `HASH_WAIT_SECONDS` they get `PasswordChecksBusy` (503, retry) instead of a hash.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from quotaledger.errors import PasswordChecksBusy

MIN_LENGTH = 8
MAX_LENGTH = 1024  # hashing a megabyte-long "password" is a cheap DoS

_hasher = PasswordHasher(time_cost=1, memory_cost=47_104, parallelism=1, type=Type.ID)


def _cores() -> int:
    # The cores this process may run on (a container's CPU set), not the machine's.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


MAX_PARALLEL_HASHES = max(1, min(_cores(), 64))
HASH_WAIT_SECONDS = 10.0
_slots = threading.BoundedSemaphore(MAX_PARALLEL_HASHES)


@contextmanager
def _hashing_slot() -> Iterator[None]:
    if not _slots.acquire(timeout=HASH_WAIT_SECONDS):
        raise PasswordChecksBusy("too many password checks at once: retry in a moment")
    try:
        yield
    finally:
        _slots.release()


def check_password_rules(password: str) -> str | None:
    """None if acceptable, else the reason it is refused."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    with _hashing_slot():
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work verification: with no hash (unknown user) a dummy hash is checked, so
    the time taken does not reveal whether the account exists."""
    if len(password) > MAX_LENGTH:
        password = password[:MAX_LENGTH]  # still do the work; the result is False anyway
        password_hash = None
    with _hashing_slot():
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
