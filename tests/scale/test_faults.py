"""Faults: kill -9 under load, a terminated PostgreSQL backend, Redis going away, two
processes on one SQLite file, a failure between the debit and the usage row. Whatever
happens, no acknowledged charge is lost and the ledger invariant holds."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from scale_support import Instances, admin_token
from sqlalchemy import func, select

from quotaledger.billing import ledger, pricing
from quotaledger.errors import QuotaLedgerError
from quotaledger.identity import accounts
from quotaledger.settings import normalise_database_url
from quotaledger.store.database import Database
from quotaledger.store.tables import usage, users
from support import check_invariant, free_port, token_from

pytestmark = pytest.mark.slow


def _setup(server, quota: int = 10**12) -> str:  # type: ignore[no-untyped-def]
    assert server.cli("user", "create", "alice", "--quota", str(quota)).returncode == 0
    assert server.cli("price", "set", "m", "--per-call-usd", "0.002").returncode == 0
    return admin_token(server)


class _Load:
    """Charges with unique request_ids from a few threads until stopped; remembers the
    request_ids that were acknowledged with 200."""

    def __init__(self, base_url: str, token: str, threads: int = 6) -> None:
        self.base_url, self.token = base_url, token
        self.acknowledged: set[str] = set()
        self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(100_000):  # bounded; stops much earlier
                if self._stop.is_set():
                    return
                request_id = f"t{n}-{i}"
                try:
                    response = client.post(
                        self.base_url + "/api/usage",
                        json={"username": "alice", "model": "m", "request_id": request_id},
                        headers={"Authorization": self.token},
                    )
                except httpx.HTTPError:
                    self.failures += 1
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    self.acknowledged.add(request_id)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.acknowledged) >= count, "the load never got going"


def _recorded(database: Database) -> set[str]:
    with database.read() as connection:
        return set(connection.execute(select(usage.c.request_id)).scalars())


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_kill_9_under_load_loses_no_acknowledged_charge(
    backend: str, instances: Instances, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'crash.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    (server,) = instances(url, 1)
    token = _setup(server)

    with _Load(server.base_url, token) as load:
        load.wait_for(200)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
    acknowledged = set(load.acknowledged)

    database = Database(normalise_database_url(url))
    recorded = _recorded(database)
    assert acknowledged <= recorded  # every 200 survived the crash
    check_invariant(database)
    database.dispose()


@pytest.mark.postgres
def test_a_terminated_postgres_backend_loses_nothing_and_the_server_recovers(
    instances: Instances, postgres_url: str
) -> None:
    (server,) = instances(postgres_url, 1)
    token = _setup(server)
    database = Database(normalise_database_url(postgres_url))
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )

    with _Load(server.base_url, token) as load:
        load.wait_for(100)
        for _ in range(3):
            with database.write() as connection:
                connection.exec_driver_sql(terminate)
            time.sleep(0.3)
        before = len(load.acknowledged)
        load.wait_for(before + 100)  # it recovers and goes on charging

    assert set(load.acknowledged) <= _recorded(database)
    check_invariant(database)
    database.dispose()


def test_two_processes_on_one_sqlite_file_never_show_database_is_locked(
    instances: Instances, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    servers = instances(url, 2)
    token = _setup(servers[0], quota=10_000_000)  # 10,000 quota per 0.02... enough for 5,000

    async def flood() -> list[int]:
        limit = asyncio.Semaphore(24)
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(i: int) -> int:
                async with limit:
                    response = await client.post(
                        servers[i % 2].base_url + "/api/usage",
                        json={"username": "alice", "model": "m", "request_id": f"s{i}"},
                        headers={"Authorization": token},
                    )
                    return response.status_code

            return await asyncio.gather(*(one(i) for i in range(1_500)))

    codes = asyncio.run(flood())

    assert set(codes) == {200}
    assert "database is locked" not in servers[0].log() + servers[1].log()
    database = Database(url)
    check_invariant(database)
    assert len(_recorded(database)) == 1_500
    database.dispose()


@pytest.mark.parametrize("failing", ["INSERT ON usage", "UPDATE ON users"])
def test_a_failure_between_the_debit_and_the_usage_row_leaves_neither(
    sqlite_url: str, failing: str
) -> None:
    """A trigger makes the database itself fail one of the charge's two writes."""
    from quotaledger.identity.bootstrap import prepare_database
    from quotaledger.settings import Settings

    database = prepare_database(Settings(database_url=sqlite_url))
    accounts.create_account(database, "alice", "password-123", quota=1_000_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    with database.write() as connection:
        connection.exec_driver_sql(
            f"CREATE TRIGGER crash BEFORE {failing} "
            "BEGIN SELECT RAISE(ABORT, 'injected crash inside a charge'); END"
        )

    with pytest.raises(Exception, match="injected"):
        ledger.charge(database, ledger.UsageRequest("alice", "m", "r1"))
    with pytest.raises(Exception, match="injected"):
        batch = [ledger.UsageRequest("alice", "m", r) for r in ("r2", "r3")]
        ledger.charge_batch(database, batch)
    with database.write() as connection:
        connection.exec_driver_sql("DROP TRIGGER crash")

    account = accounts.find_account(database, "alice")
    assert (account.quota, account.used_quota, account.request_count) == (1_000_000, 0, 0)
    assert _recorded(database) == set()
    check_invariant(database)


def test_a_refused_charge_in_a_batch_does_not_undo_the_others(sqlite_url: str) -> None:
    from quotaledger.identity.bootstrap import prepare_database
    from quotaledger.settings import Settings

    database = prepare_database(Settings(database_url=sqlite_url))
    accounts.create_account(database, "alice", "password-123", quota=15_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))

    outcomes = ledger.charge_batch(
        database,
        [
            ledger.UsageRequest("alice", "m", "a"),
            ledger.UsageRequest("alice", "m", "b"),  # only 5,000 left: refused
            ledger.UsageRequest("ghost", "m", "c"),  # unknown user: refused
            ledger.UsageRequest("alice", "m", "a"),  # replay of the first: same answer
        ],
    )

    assert isinstance(outcomes[0], ledger.Charge) and outcomes[0].quota_remaining == 5_000
    assert isinstance(outcomes[1], QuotaLedgerError)
    assert isinstance(outcomes[2], QuotaLedgerError)
    assert isinstance(outcomes[3], ledger.Charge) and outcomes[3].replayed
    with database.read() as connection:
        assert connection.execute(select(func.count()).select_from(usage)).scalar_one() == 1
        assert (
            connection.execute(select(users.c.quota).where(users.c.username == "alice")).scalar()
            == 5_000
        )
    check_invariant(database)


@pytest.mark.redis
def test_rate_limits_fall_back_per_instance_when_redis_stops(
    instances: Instances, tmp_path: Path
) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        (server,) = instances(
            f"sqlite:///{tmp_path / 'r.db'}",
            1,
            QUOTALEDGER_REDIS_URL=f"redis://127.0.0.1:{port}/0",
            QUOTALEDGER_RATE_LIMIT_BALANCE="3/minute",
        )
        assert (
            server.cli(
                "user", "create", "alice", "--password-stdin", input="alice-password-123\n"
            ).returncode
            == 0
        )
        token = token_from(server.base_url, "alice", "alice-password-123")

        def get() -> int:
            url = server.base_url + "/api/user/self"
            return httpx.get(url, headers={"Authorization": token}).status_code

        assert [get(), get()] == [200, 200]

        redis.kill()
        redis.wait()

        # Still served (no 5xx), and still limited: per instance now.
        assert [get(), get(), get(), get()] == [200, 200, 200, 429]
        assert "Redis unavailable" in server.log()
    finally:
        if redis.poll() is None:
            redis.kill()


def test_a_busy_sqlite_answers_503_and_loses_nothing(instances: Instances, tmp_path: Path) -> None:
    """Two processes on one SQLite file with a 1 ms busy timeout: writes that cannot get the
    lock are refused with 503 (nothing written, retry later), never a 500 or SQLite's text."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    servers = instances(url, 2, QUOTALEDGER_SQLITE_BUSY_TIMEOUT_MS="1")
    token = _setup(servers[0], quota=10**12)

    async def flood() -> list[httpx.Response]:
        limit = asyncio.Semaphore(32)
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(i: int) -> httpx.Response:
                async with limit:
                    return await client.post(
                        servers[i % 2].base_url + "/api/usage",
                        json={"username": "alice", "model": "m", "request_id": f"b{i}"},
                        headers={"Authorization": token},
                    )

            return await asyncio.gather(*(one(i) for i in range(1_200)))

    responses = asyncio.run(flood())

    assert {r.status_code for r in responses} <= {200, 503}  # here: ~10 % 503
    for busy in (r for r in responses if r.status_code == 503):
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["message"] == "the database is busy: retry in a moment"
    acknowledged = {f"b{i}" for i, r in enumerate(responses) if r.status_code == 200}
    database = Database(url)
    assert acknowledged == _recorded(database)  # every 200 is there, no 503 is
    check_invariant(database)
    database.dispose()
