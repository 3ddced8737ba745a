"""Databases and server processes for the benchmarks.

Databases are fresh SQLite files, migrated by `quotaledger db upgrade` (the real schema),
then bulk-loaded with `sqlite3.executemany` (creating a million accounts through the API
would take hours of argon2). The rows are what the server itself writes: fake password
hashes (nobody logs in), SHA-256 token digests from `quotaledger.tokens` (real `ql_`
tokens for the accounts the load generator uses, unique junk digests for the rest), and a
grant row for every non-zero balance so that the ledger invariant holds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from quotaledger import tokens

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUOTALEDGER = str(BIN / "quotaledger")
PYTHON = sys.executable
SERVER_CORE = "0"
CLIENT_CORE = "1"

# Looks like an argon2id hash; verifies nothing (the benchmarks never log in).
FAKE_PASSWORD_HASH = "$argon2id$v=19$m=47104,t=1,p=1$YmVuY2htYXJrc2FsdA$" + "A" * 43
BENCH_MODEL = "bench-model"


def pinned(core: str, command: Sequence[str]) -> list[str]:
    """`command` pinned to one CPU core with taskset (when there is more than one core)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", core, *command]
    return list(command)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# `run.py --src DIR`: servers, CLIs and the watcher import quotaledger from DIR instead
# (e.g. an exported older commit, to compare before and after on the same machine).
SRC_OVERRIDE: list[str] = []


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any QUOTALEDGER_* setting of the caller's, plus `extra`:
    every server runs on the documented defaults unless a benchmark says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTALEDGER_")}
    if env.get("PYTHONPATH"):  # servers run in a temporary folder: `PYTHONPATH=src` must hold
        env["PYTHONPATH"] = os.pathsep.join(
            str(Path(part).resolve()) for part in env["PYTHONPATH"].split(os.pathsep) if part
        )
    if SRC_OVERRIDE:
        env["PYTHONPATH"] = os.pathsep.join([*SRC_OVERRIDE, env.get("PYTHONPATH", "")]).strip(
            os.pathsep
        )
    env.update(extra)
    return env


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# ---------------------------------------------------------------- databases


@dataclass
class LoadedDatabase:
    path: Path
    users: int
    admin_token: str
    probe_tokens: dict[str, str] = field(default_factory=dict)  # username -> token

    @property
    def url(self) -> str:
        return sqlite_url(self.path)


def migrate(path: Path) -> None:
    """The schema by the project's own Alembic migrations (only them: `quotaledger db
    upgrade` would also create the first admin, which the loader inserts itself), in a
    child process so that `--src` applies to it too."""
    code = (
        "import sys; from quotaledger.store.database import Database; "
        "from quotaledger.store.migrate import upgrade; "
        "d = Database(sys.argv[1]); upgrade(d); d.dispose()"
    )
    subprocess.run(
        [PYTHON, "-c", code, sqlite_url(path)],
        env=clean_env(),
        check=True,
        capture_output=True,
        text=True,
    )


def username(index: int) -> str:
    return f"user{index:07d}"


def probe_indices(users: int, probes: int) -> list[int]:
    """`probes` indices spread evenly over `users` (all of them if there are fewer)."""
    if probes >= users:
        return list(range(users))
    step = users / probes
    return [int(i * step) for i in range(probes)]


def load_users(
    path: Path,
    users: int,
    *,
    probes: int = 1000,
    probe_quota: int = 25_000_000,
    low_probes: int = 0,
    low_quota: int = 5_000_000,
) -> LoadedDatabase:
    """A migrated database with an `admin` (admin token) and `users` accounts
    `user0000000...`. The `probes` accounts spread over the table get real tokens and
    `probe_quota` (the first `low_probes` of them `low_quota`); the others have no quota and
    a digest no token has."""
    migrate(path)
    now = int(time.time())
    probe_set = probe_indices(users, probes)
    low = set(probe_set[:low_probes])
    issued: dict[str, str] = {}
    admin_token = tokens.generate_token()

    def row(name: str, role: str, quota: int, token_hash: str, hint: str | None) -> tuple:
        return (
            name,
            name,
            FAKE_PASSWORD_HASH,
            "default",
            role,
            "enabled",
            quota,
            0,
            0,
            quota,
            token_hash,
            hint,
            now if hint else None,
            now,
        )

    probe_lookup = set(probe_set)

    def rows() -> Iterator[tuple]:
        yield row(
            "admin", "admin", 0, tokens.hash_token(admin_token), tokens.token_hint(admin_token)
        )
        for index in range(users):
            name = username(index)
            if index in probe_lookup:
                token = tokens.generate_token()
                issued[name] = token
                quota = low_quota if index in low else probe_quota
                yield row(name, "user", quota, tokens.hash_token(token), tokens.token_hint(token))
            else:
                junk = hashlib.sha256(b"no-token-%d" % index).hexdigest()
                yield row(name, "user", 0, junk, None)

    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA cache_size = -262144")  # 256 MiB while loading
        connection.execute("BEGIN")
        connection.executemany(
            'INSERT INTO users (username, display_name, password_hash, "group", role, status, '
            "quota, used_quota, request_count, granted_total, token_hash, token_hint, "
            "token_created_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows(),
        )
        connection.execute(
            "INSERT INTO grants (user_id, quota, note, created_at) "
            "SELECT id, quota, 'benchmark', ? FROM users WHERE quota > 0",
            (now,),
        )
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode = WAL")  # what the server uses anyway
    finally:
        connection.close()
    return LoadedDatabase(path, users, admin_token, issued)


def set_price(database: LoadedDatabase) -> None:
    """A per-token price for the usage benchmark, through the admin CLI."""
    subprocess.run(
        [
            QUOTALEDGER,
            "price",
            "set",
            BENCH_MODEL,
            "--input-usd-per-mtok",
            "0.15",
            "--output-usd-per-mtok",
            "0.60",
            "--database-url",
            database.url,
        ],
        env=clean_env(),
        check=True,
        capture_output=True,
        text=True,
    )


def ledger_check(path: Path) -> dict[str, int | bool]:
    """SPEC §1's invariant over every user, and how many usage rows there are."""
    connection = sqlite3.connect(path)
    try:
        broken = connection.execute(
            """
            SELECT count(*) FROM users u
            LEFT JOIN (SELECT user_id, sum(quota) q, count(*) n FROM usage GROUP BY user_id) s
              ON s.user_id = u.id
            LEFT JOIN (SELECT user_id, sum(quota) g FROM grants GROUP BY user_id) g
              ON g.user_id = u.id
            WHERE u.quota < 0
               OR u.granted_total != coalesce(g.g, 0)
               OR u.granted_total - coalesce(s.q, 0) != u.quota
               OR u.used_quota != coalesce(s.q, 0)
               OR u.request_count != coalesce(s.n, 0)
            """
        ).fetchone()[0]
        rows = connection.execute("SELECT count(*) FROM usage").fetchone()[0]
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        connection.close()
    return {
        "usage_rows": rows,
        "users_breaking_invariant": broken,
        "invariant_ok": broken == 0,
        "checker_synchronous": synchronous,
    }


# ---------------------------------------------------------------- servers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def processes(self) -> list[int]:
        """The server's process and all its descendants: `quotaledger serve` answers from
        Granian's worker processes, so CPU time, peak memory and a core's wait are theirs."""
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        return found

    @property
    def worker_pid(self) -> int:
        """The process whose main thread runs the event loop that answers: the last one
        started (the single worker of `--workers 1`; the server itself if it forks none)."""
        return self.processes()[-1]

    def cpu_seconds(self) -> float:
        """User + system CPU time of every process of the server, all their threads."""
        return sum(cpu_seconds(pid) for pid in self.processes())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_ready(server: Server, probe: str, timeout: float = 60) -> Server:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(server.base_url + probe, timeout=1).status_code < 500:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not start:\n{server.log.read_text()[-3000:]}")


def _spawn(name: str, command: list[str], env: dict[str, str], workdir: Path, port: int) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            pinned(SERVER_CORE, command),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    return Server(name, f"http://127.0.0.1:{port}", process, log)


def _serve_flags(port: int, database_url: str) -> list[str]:
    """`quotaledger serve`'s flags for every benchmarked server: the ceiling gets the same."""
    return [
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--database-url", database_url,
    ]  # fmt: skip


def start_quotaledger(
    name: str, database_url: str, workdir: Path, *, rate_limit_balance: str = "off"
) -> Server:
    """`quotaledger serve --workers 1` on a free loopback port, pinned to the server core,
    on default settings except the balance rate limit (and the database)."""
    port = free_port()
    env = clean_env(QUOTALEDGER_RATE_LIMIT_BALANCE=rate_limit_balance)
    command = [QUOTALEDGER, "serve", *_serve_flags(port, database_url)]
    return _wait_ready(_spawn(name, command, env, workdir, port), "/healthz")


def start_ceiling(body: bytes, workdir: Path) -> Server:
    """The bare Starlette route (benchmarks/ceiling_app.py), launched through
    `quotaledger serve`'s own code path so that the engine gets the very same settings."""
    port = free_port()
    body_file = workdir / "ceiling-body.json"
    body_file.write_bytes(body)
    env = clean_env(
        QLB_CEILING_BODY=str(body_file),
        QUOTALEDGER_RATE_LIMIT_BALANCE="off",
        QUOTALEDGER_ADMIN_PASSWORD="ceiling-admin-password",
    )
    ceiling_app = str(ROOT / "benchmarks" / "ceiling_app.py")
    command = [PYTHON, ceiling_app, *_serve_flags(port, sqlite_url(workdir / "ceiling.db"))]
    server = _wait_ready(_spawn("ceiling", command, env, workdir, port), "/__ceiling__")
    if httpx.get(server.base_url + "/__ceiling__", timeout=5).status_code != 204:
        server.stop()
        raise RuntimeError(
            "the ceiling launcher did not swap `quotaledger serve`'s engine target: "
            "update benchmarks/ceiling_app.py to follow cli/serve.py"
        )
    return server


def ceiling_settings(server: Server) -> dict[str, object]:
    """What the ceiling launcher ran through `quotaledger serve` (its engine target)."""
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("CEILING_ENGINE_TARGET "):
            return {"engine": "granian (quotaledger serve)", "target": line.split(" ", 1)[1]}
    return {}
