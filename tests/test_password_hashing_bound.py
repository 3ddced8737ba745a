"""Password hashing is bounded in parallel: each argon2id hash takes 46 MiB, and 20
concurrent logins used to run 20 (up to 40) at once. At most `MAX_PARALLEL_HASHES` (the
core count) run at a time, whoever calls; the rest wait, and past `HASH_WAIT_SECONDS`
they are refused with 503 and `Retry-After` rather than wait for ever."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

from quotaledger import passwords
from quotaledger.errors import PasswordChecksBusy


class _CountingHasher:
    """The real hasher, counting how many of its calls are running at each moment."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.calls = 0

    def _enter(self) -> None:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)

    def _leave(self) -> None:
        with self.lock:
            self.running -= 1

    def hash(self, password: str) -> str:
        self._enter()
        try:
            return self.real.hash(password)  # type: ignore[attr-defined, no-any-return]
        finally:
            self._leave()

    def verify(self, password_hash: str, password: str) -> bool:
        self._enter()
        try:
            return self.real.verify(password_hash, password)  # type: ignore[attr-defined, no-any-return]
        finally:
            self._leave()


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[_CountingHasher]:
    passwords._dummy_hash()  # made once, before counting starts
    hasher = _CountingHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", hasher)
    yield hasher


def test_the_bound_is_the_number_of_cores_and_at_least_one() -> None:
    assert 1 <= passwords.MAX_PARALLEL_HASHES <= 64


def test_many_concurrent_verifications_never_run_more_hashes_than_the_bound(
    counting: _CountingHasher,
) -> None:
    stored = passwords.hash_password("alice-password-123")
    counting.most = counting.calls = 0
    attempts = 4 * passwords.MAX_PARALLEL_HASHES + 8
    start = threading.Barrier(attempts)

    def attempt(i: int) -> bool:
        start.wait()  # every thread asks at the same moment
        return passwords.verify_password(stored if i % 2 else None, f"guess-{i}-password")

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        results = list(pool.map(attempt, range(attempts)))

    assert results == [False] * attempts
    assert counting.calls == attempts
    assert counting.most <= passwords.MAX_PARALLEL_HASHES


def test_hashing_new_passwords_is_bounded_too(counting: _CountingHasher) -> None:
    attempts = 3 * passwords.MAX_PARALLEL_HASHES + 4
    start = threading.Barrier(attempts)

    def make(i: int) -> str:
        start.wait()
        return passwords.hash_password(f"new-password-{i}")

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        hashes = list(pool.map(make, range(attempts)))

    assert len(set(hashes)) == attempts
    assert counting.most <= passwords.MAX_PARALLEL_HASHES


@contextmanager
def every_slot_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """All hashing slots held (as by other logins), and a short wait before refusing."""
    monkeypatch.setattr(passwords, "HASH_WAIT_SECONDS", 0.2)
    for _ in range(passwords.MAX_PARALLEL_HASHES):
        assert passwords._slots.acquire(timeout=5)
    try:
        yield
    finally:
        for _ in range(passwords.MAX_PARALLEL_HASHES):
            passwords._slots.release()


def test_a_check_that_waits_past_the_limit_is_refused_as_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    began = time.monotonic()
    with every_slot_taken(monkeypatch), pytest.raises(PasswordChecksBusy):
        passwords.verify_password(None, "alice-password-123")

    assert time.monotonic() - began < 5
    assert passwords.verify_password(None, "alice-password-123") is False  # slots back


def test_a_login_that_finds_every_slot_taken_is_503_with_retry_after(
    client: TestClient, make_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user("alice")

    with every_slot_taken(monkeypatch):
        response = client.post(
            "/api/user/login", json={"username": "alice", "password": user.password}
        )

    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    assert response.json()["message"] == "too many password checks at once: retry in a moment"
    assert "ql_session" not in response.cookies
