"""A redemption code works exactly once even when two `quotaledger serve` instances on one
PostgreSQL redeem it at the same moment (SPEC §9)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quotaledger.billing import audit, redemptions
from quotaledger.identity import accounts
from quotaledger.store.database import Database
from support import LiveServer, _empty_postgres, start_server, stop_server, token_from

ROUNDS = 25
UNLIMITED = {"QUOTALEDGER_RATE_LIMIT_REDEEM": "off", "QUOTALEDGER_RATE_LIMIT_REDEEM_ADDRESS": "off"}


@pytest.fixture
def two_instances(postgres_server_url: str, tmp_path: Path) -> Iterator[list[LiveServer]]:
    _empty_postgres(postgres_server_url)
    servers = [start_server(postgres_server_url, tmp_path, UNLIMITED)]
    servers.append(start_server(postgres_server_url, tmp_path, UNLIMITED))
    yield servers
    for server in servers:
        stop_server(server)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_code_raced_through_two_instances_is_redeemed_once(
    two_instances: list[LiveServer],
) -> None:
    database = Database(two_instances[0].database_url)
    try:
        for name in ("alice", "bob"):
            accounts.create_account(database, name, f"{name}-password-123")
        tokens = [
            token_from(server.base_url, name, f"{name}-password-123")
            for server, name in zip(two_instances, ("alice", "bob"), strict=True)
        ]
        codes = [raw for _, raw in redemptions.create_codes(database, 1_000, ROUNDS)]
        outcomes = [_race(two_instances, tokens, code) for code in codes]

        assert all(sorted(statuses) == [200, 409] for statuses in outcomes), outcomes
        quotas = [accounts.find_account(database, n).quota for n in ("alice", "bob")]
        assert sum(quotas) == ROUNDS * 1_000
        assert all(code.redeemed_by for code in redemptions.list_codes(database))
        assert audit.check_invariant(database) == []
    finally:
        database.dispose()


def _race(servers: list[LiveServer], tokens: list[str], code: str) -> list[int]:
    """Both instances redeem `code` for their user, released by one barrier."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def redeem(server: LiveServer, token: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            request = client.build_request(
                "POST", "/api/user/topup", json={"key": code}, headers={"Authorization": token}
            )
            barrier.wait()
            statuses.append(client.send(request).status_code)

    threads = [
        threading.Thread(target=redeem, args=pair) for pair in zip(servers, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses
