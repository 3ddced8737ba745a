"""Several real `quotaledger serve` processes on one database (fixtures re-exported by
this folder's conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import (
    ADMIN_PASSWORD,
    LiveServer,
    _empty_postgres,
    start_server,
    stop_server,
    token_from,
)

Instances = Callable[..., list[LiveServer]]


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    _empty_postgres(postgres_server_url)
    return postgres_server_url


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[Instances]:
    """`instances(database_url, count, **env)` starts `count` servers on one database."""
    started: list[LiveServer] = []

    def start(database_url: str, count: int = 2, **env: str) -> list[LiveServer]:
        servers = [start_server(database_url, tmp_path, env) for _ in range(count)]
        started.extend(servers)
        return servers

    yield start
    for server in started:
        if server.process.poll() is None:
            stop_server(server)


def admin_token(server: LiveServer) -> str:
    return token_from(server.base_url, "admin", ADMIN_PASSWORD)
