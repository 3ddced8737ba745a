"""Fixtures of the client tests: a live fake provider, a refused port, a clean environment."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from client_server import FakeProvider, FakeServer

from quotaledger.client import retry


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    yield from _serve()


@pytest.fixture
def other_server() -> Iterator[FakeProvider]:
    """A second provider, on another port: another origin."""
    yield from _serve()


def _serve() -> Iterator[FakeProvider]:
    httpd = FakeServer(FakeProvider)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.provider
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without waiting, so that the suite stays fast (the CLI has no backoff flag)."""
    monkeypatch.setattr(retry, "DEFAULT_BACKOFF", 0.0)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "QUOTALEDGER_TOKEN",
        "QUOTALEDGER_TOKEN_FILE",
        "QUOTALEDGER_BASE_URL",
        "QUOTALEDGER_PROVIDER",
        "QUOTALEDGER_USER_ID",
        "QUOTALEDGER_TIMEOUT",
        "QUOTALEDGER_RETRIES",
    ):
        monkeypatch.delenv(name, raising=False)
