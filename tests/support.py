"""Shared test support: fixtures (re-exported by conftest.py) and helpers that test modules
import with `from support import ...`: a fresh database per test (SQLite file, or
PostgreSQL where it runs), the real app, and real `quotaledger serve` processes on loopback."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from quotaledger.identity import accounts
from quotaledger.identity.accounts import Account
from quotaledger.identity.bootstrap import prepare_database
from quotaledger.server.app import create_app
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.store.tables import grants, usage, users

POSTGRES_URL = os.environ.get("QUOTALEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("QUOTALEDGER_TEST_REDIS", "redis://127.0.0.1:6379/15")
ADMIN_PASSWORD = "admin-password-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_available() -> bool:
    return _reachable("127.0.0.1", 5432)


def redis_available() -> bool:
    return _reachable("127.0.0.1", 6379)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    name = f"quotaledger_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL + "/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"{POSTGRES_URL}/{name}"
    with psycopg.connect(POSTGRES_URL + "/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


@dataclass(frozen=True)
class _PostgresBaseline:
    """What `prepare_database` leaves in an empty PostgreSQL schema (the tables at head, the
    admin's row, the sequences), so that a test's database is reset to it in milliseconds
    instead of migrated again (0.27 s, times ~600 tests)."""

    revision: str
    tables: frozenset[str]
    rows: dict[str, bytes]  # COPY text of each table that holds rows
    sequences: dict[str, int | None]  # last value, None where never used


def _postgres_state(connection) -> tuple[str | None, frozenset[str]]:  # type: ignore[no-untyped-def]
    tables = frozenset(
        name
        for (name,) in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    )
    if "alembic_version" not in tables:
        return None, tables
    found = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return (found[0] if found else None), tables - {"alembic_version"}


@pytest.fixture(scope="session")
def _postgres_baseline(postgres_server_url: str) -> _PostgresBaseline:
    import psycopg

    _empty_postgres(postgres_server_url)
    _prepare(postgres_server_url)
    with psycopg.connect(postgres_server_url, autocommit=True) as connection:
        revision, tables = _postgres_state(connection)
        assert revision is not None
        rows = {}
        for table in sorted(tables):
            with connection.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
            if data:
                rows[table] = data
        sequences = dict(
            connection.execute(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"
            ).fetchall()
        )
    return _PostgresBaseline(revision, tables, rows, sequences)


def _reset_postgres(url: str, baseline: _PostgresBaseline) -> None:
    """The schema at `url` as `prepare_database` leaves it: rows deleted and the baseline's
    put back where the schema is the baseline's; migrated from empty where a test left it
    otherwise (a migration test, an emptied schema)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        if _postgres_state(connection) != (baseline.revision, baseline.tables):
            connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            _prepare(url)
            return
        with connection.transaction():
            # Triggers (foreign keys among them) off, so that the order of deletes is free.
            connection.execute("SET LOCAL session_replication_role = replica")
            for table in baseline.tables:
                connection.execute(f'DELETE FROM "{table}"')
            for table, data in baseline.rows.items():
                with connection.cursor().copy(f'COPY "{table}" FROM STDIN') as copy:
                    copy.write(data)
            for sequence, last in baseline.sequences.items():
                if last is None:
                    connection.execute(f'ALTER SEQUENCE "{sequence}" RESTART')
                else:
                    connection.execute("SELECT setval(%s, %s)", (sequence, last))


def _prepare(url: str) -> None:
    prepare_database(_test_settings(url)).dispose()


def _test_settings(url: str) -> Settings:
    """The defaults on `url`, with the tests' admin password (no environment read)."""
    settings = Settings.from_env({}, database_url=url, admin_password=None)
    return settings.with_overrides(admin_password=_secret(ADMIN_PASSWORD))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that uses it runs on a fresh SQLite file and on a fresh PostgreSQL schema
    (empty; where the test also uses `database`, already migrated with its admin, as
    `database` would leave it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'quotaledger.db'}"
    url: str = request.getfixturevalue("postgres_server_url")
    if "database" in request.fixturenames:
        _reset_postgres(url, request.getfixturevalue("_postgres_baseline"))
    else:
        _empty_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'quotaledger.db'}"


@pytest.fixture(scope="session")
def _prepared_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head with its admin, made once per session: each test's
    database starts as a copy of it (migrating and hashing the admin's password per test
    cost 0.16 s each, most of the quick subset). The migrations themselves are tested from
    an empty file in tests/relay/test_schema.py and tests/store."""
    path = tmp_path_factory.mktemp("template") / "quotaledger.db"
    _prepare(f"sqlite:///{path}")
    return path


def _copy_sqlite(template: Path, url: str) -> None:
    """A consistent copy of `template` at the file behind `url` (SQLite's backup API, so a
    WAL file left beside the template cannot be missed)."""
    target = url.removeprefix("sqlite:///")
    with sqlite3.connect(template) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    source.close()
    copy.close()


@pytest.fixture
def migrated_sqlite_url(sqlite_url: str, _prepared_sqlite: Path) -> str:
    """A SQLite file with its schema, as `serve` or `db upgrade` leaves it (admin commands
    refuse to create a database)."""
    _copy_sqlite(_prepared_sqlite, sqlite_url)
    return sqlite_url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return _test_settings(database_url)


def _secret(value: str):  # type: ignore[no-untyped-def]
    from quotaledger.settings import Secret

    return Secret(value)


@pytest.fixture
def database(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Database]:
    if settings.is_sqlite and not Path(settings.database_url.removeprefix("sqlite:///")).exists():
        _copy_sqlite(request.getfixturevalue("_prepared_sqlite"), settings.database_url)
    database = prepare_database(settings)
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with TestClient(create_app(settings, database), base_url="http://testserver") as test_client:
        yield test_client


@dataclass
class User:
    account: Account
    password: str


@pytest.fixture
def make_user(database: Database):  # type: ignore[no-untyped-def]
    def make(name: str = "alice", quota: int = 25_000_000, **kwargs: object) -> User:
        password = f"{name}-password-123"
        account = accounts.create_account(database, name, password, quota=quota, **kwargs)  # type: ignore[arg-type]
        return User(account, password)

    return make


def login(client: TestClient, username: str, password: str) -> str:
    """Log in through the API; returns the CSRF token to send with state changes."""
    response = client.post("/api/user/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return client.cookies["ql_csrf"]


def issue_token(client: TestClient, username: str, password: str) -> str:
    csrf = login(client, username, password)
    response = client.post(
        "/api/user/token", json={"password": password}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["data"]["token"]
    return token


@pytest.fixture
def admin_token(client: TestClient) -> str:
    return issue_token(client, "admin", ADMIN_PASSWORD)


# ------------------------------------------------------------------ a real server process


@dataclass
class LiveServer:
    base_url: str
    database_url: str
    process: subprocess.Popen[str]
    output: Path

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `quotaledger ARGS` against this server's database."""
        return run_cli(*args, database_url=self.database_url, input=input)

    def log(self) -> str:
        return self.output.read_text()

    @property
    def worker_pid(self) -> int:
        """The process that serves requests: Granian's worker, the child of `serve`'s process
        (what memory is measured on)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = children.read_text().split() if children.exists() else []
        return int(found[0]) if found else self.process.pid


def run_cli(
    *args: str,
    database_url: str | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    if database_url:
        full_env["QUOTALEDGER_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "quotaledger", *args],
        capture_output=True,
        text=True,
        input=input,
        env=full_env,
        timeout=60,
        check=False,
    )


def start_server(
    database_url: str, tmp_path: Path, env: dict[str, str] | None = None, *extra: str
) -> LiveServer:
    port = free_port()
    output = tmp_path / f"server-{port}.log"
    full_env = {
        **os.environ,
        "QUOTALEDGER_DATABASE_URL": database_url,
        "QUOTALEDGER_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **(env or {}),
    }
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "quotaledger", "serve", "--port", str(port), *extra],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=full_env,
            text=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", database_url, process, output)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{output.read_text()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{output.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """`quotaledger serve` in its own process, on a fresh SQLite file, on loopback."""
    server = start_server(f"sqlite:///{tmp_path / 'live.db'}", tmp_path)
    yield server
    stop_server(server)


def token_from(base_url: str, username: str, password: str) -> str:
    """Log in on a running server and issue a system token, as the web page does."""
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        login = browser.post("/api/user/login", json={"username": username, "password": password})
        assert login.status_code == 200, login.text
        response = browser.post(
            "/api/user/token",
            json={"password": password},
            headers={"X-CSRF-Token": browser.cookies["ql_csrf"]},
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["data"]["token"]
    return token


def check_invariant(database: Database) -> None:
    """SPEC §1 for every user, and the global conservation law."""
    with database.read() as connection:
        rows = connection.execute(
            select(
                users.c.id,
                users.c.quota,
                users.c.used_quota,
                users.c.request_count,
                users.c.granted_total,
            )
        ).all()
        for row in rows:
            charged, count = connection.execute(
                select(func.coalesce(func.sum(usage.c.quota), 0), func.count()).where(
                    usage.c.user_id == row.id
                )
            ).one()
            granted = connection.execute(
                select(func.coalesce(func.sum(grants.c.quota), 0)).where(grants.c.user_id == row.id)
            ).scalar_one()
            assert row.quota >= 0
            assert row.granted_total == granted
            assert row.granted_total - charged == row.quota
            assert row.used_quota == charged
            assert row.request_count == count
