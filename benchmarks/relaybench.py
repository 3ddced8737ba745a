"""The relay (issue 15): the metered relay against a bare pass-through, LiteLLM's proxy side
by side, 1,000 concurrent streams, and the relay on PostgreSQL with two instances.

    .venv/bin/python benchmarks/run.py --only relay            # everything below
    .venv/bin/python benchmarks/run.py --only relay-streams    # the streams only

The fake upstream (examples/fake_upstream.py, on uvloop) runs pinned to the client core with
wrk and the stream client; every server under test on the server core, one worker each:

- `relay-ceiling`: `bare_passthrough.py`, a Starlette route forwarding the body with one
  pooled aiohttp session and nothing of quotaledger's (the honest ceiling, issue 25 item 7),
  launched through `serve`'s engine settings as the balance ceiling is;
- `relay`: `quotaledger serve` on a SQLite file (`synchronous=FULL`, the default) with one
  OpenAI channel and one Anthropic channel on the fake upstream, a priced model and a key:
  every request is key-checked, reserved, relayed, settled and logged;
- `relay-pg`: two `quotaledger serve` instances on one PostgreSQL database (the load split
  between them by two wrk processes), both on the server core: the same CPU as the ceiling;
- `relay-many`, `relay-pg-many`: the same servers with the load spread over `MANY_USERS`
  accounts, one key each (`chat_many.lua` picks the next key on every request). The
  single-user rows stay: one user's requests serialise on that user's row lock (every
  reservation and settlement takes it), which is the worst case; real traffic spreads over
  many users, whose batches do not wait for each other;
- `litellm`: LiteLLM's proxy (`litellm --config`, master key, no database, 1 worker) from its
  own virtualenv (QLB_LITELLM, default /tmp/litellm-venv/bin/litellm), when installed.

wrk cases: throughput at the run's connections (non-stream `POST /v1/chat/completions`, 13
output tokens answered), and latency at concurrency 1 (the same request, straight to the
upstream, through the pass-through, the relay and LiteLLM). Then, not wrk (`measure`): 1,000
concurrent streams of 200 events over 20 s each, all opened at once and then opened over 2 s,
each time straight at the upstream, through the pass-through and through a fresh relay
process (its peak RSS is VmHWM), and 200 sequential streamed `POST /v1/messages` through the
pass-through and the relay (time to the first event); `QLB_RELAY_STREAMS=0` skips these (the
non-stream cases only, ~1 minute with `--quick`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
from fixtures import (
    CLIENT_CORE,
    PYTHON,
    QUOTALEDGER,
    ROOT,
    Server,
    _serve_flags,
    _spawn,
    _wait_ready,
    clean_env,
    free_port,
    migrate,
    pinned,
    sqlite_url,
)
from harness import Bench, Case, log, ratio_row

MODEL, CLAUDE = "bench-gpt", "bench-claude"
SECRET_KEY = "relay-benchmark-secret-key-of-enough-length"
POSTGRES = os.environ.get("QLB_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
LITELLM = os.environ.get("QLB_LITELLM", "/tmp/litellm-venv/bin/litellm")
LITELLM_KEY = "sk-litellm-bench-master-key"
STREAMS, STREAM_EVENTS, STREAM_SECONDS = 1000, 200, 20.0
MESSAGES_RUNS = 200
MANY_USERS = 64  # accounts of the spread-load cases, one relay key each
_keys: dict[str, str] = {}  # server name -> the relay key its load sends
_many_keys: dict[str, Path] = {}  # server name -> the file of MANY_USERS keys (one a line)
_postgres_databases: list[str] = []


# ---------------------------------------------------------------- setup


def setup(bench: Bench) -> None:
    work = bench.workdir
    upstream = start_upstream(work)
    bench.servers["upstream"] = upstream
    sqlite_path = work / "relay.db"
    migrate(sqlite_path)
    _keys["relay"] = provision(sqlite_url(sqlite_path), upstream.base_url)
    _many_keys["relay"] = provision_many(sqlite_url(sqlite_path), work / "relay-keys.txt")
    bench.servers["relay"] = start_relay("relay", sqlite_url(sqlite_path), work)
    bench.servers["relay-ceiling"] = start_passthrough(upstream.base_url, work)
    _keys["relay-ceiling"] = _keys["upstream"] = "none"
    if not bench.wants("relay"):
        return  # `--only relay-streams`: the streams need no PostgreSQL nor LiteLLM
    try:
        setup_postgres(bench, upstream.base_url)
    except Exception as exc:  # no PostgreSQL here: the row says so
        bench.notes.append(f"relay on PostgreSQL not run: {exc}")
        log(f"relay on PostgreSQL not run: {exc}")
    if Path(LITELLM).exists():
        try:
            bench.servers["litellm"] = start_litellm(upstream.base_url, work)
            _keys["litellm"] = LITELLM_KEY
        except RuntimeError as exc:
            bench.notes.append(f"LiteLLM did not start: {str(exc)[-400:]}")
            log(f"LiteLLM did not start: {exc}")
    else:
        bench.notes.append(f"LiteLLM not installed at {LITELLM}")


def start_upstream(work: Path) -> Server:
    """The fake upstream on the client core (with wrk): the server core is the measured one's."""
    port = free_port()
    command = [PYTHON, str(ROOT / "examples" / "fake_upstream.py"), "--port", str(port)]
    log_file = work / "upstream.log"
    with log_file.open("wb") as sink:
        process = subprocess.Popen(
            pinned(CLIENT_CORE, command), stdout=sink, stderr=subprocess.STDOUT, env=clean_env()
        )
    return _wait_ready(
        Server("upstream", f"http://127.0.0.1:{port}", process, log_file), "/v1/models"
    )


def provision(database_url: str, upstream: str) -> str:
    """Prices, the two channels, an account with a large balance and its relay key; the key."""
    from quotaledger.billing import ledger, pricing
    from quotaledger.identity import accounts, keys
    from quotaledger.relay import channels
    from quotaledger.secret import Secret
    from quotaledger.store.database import Database

    database = Database(database_url)
    try:
        pricing.set_price(
            database, pricing.make_price(MODEL, input_usd_per_mtok="2", output_usd_per_mtok="8")
        )
        pricing.set_price(
            database, pricing.make_price(CLAUDE, input_usd_per_mtok="3", output_usd_per_mtok="15")
        )
        cipher = channels.ChannelCipher(Secret(SECRET_KEY))
        key = Secret("sk-fake-upstream-key-0123456789")
        channels.add_channel(
            database, cipher, channels.ChannelSpec("fake-openai", upstream, (MODEL,), key)
        )
        channels.add_channel(
            database,
            cipher,
            channels.ChannelSpec("fake-anthropic", upstream, (CLAUDE,), key, format="anthropic"),
        )
        account = accounts.create_account(database, "relay-bench", "relay-bench-password")
        ledger.top_up(database, "relay-bench", 10**15)  # never runs out during a run
        _, raw = keys.create_key(database, account.id, "bench")
        return raw
    finally:
        database.dispose()


def provision_many(database_url: str, path: Path, users: int = MANY_USERS) -> Path:
    """`users` more accounts with a large balance and one relay key each, the keys written
    to `path` one a line (for chat_many.lua); the path."""
    from quotaledger.billing import ledger
    from quotaledger.identity import accounts, keys
    from quotaledger.store.database import Database

    database = Database(database_url)
    raws = []
    try:
        for i in range(users):
            name = f"relay-bench-{i:03d}"
            account = accounts.create_account(database, name, "relay-bench-password")
            ledger.top_up(database, name, 10**15)
            raws.append(keys.create_key(database, account.id, "bench")[1])
    finally:
        database.dispose()
    path.write_text("\n".join(raws) + "\n")
    return path


def start_relay(name: str, database_url: str, work: Path) -> Server:
    port = free_port()
    # Every load generator here connects from 127.0.0.1: the front door's gate of 256
    # requests in progress per address (a deployment's clients come from many) would refuse
    # the 1,000 streams past the 256th with 429.
    env = clean_env(QUOTALEDGER_SECRET_KEY=SECRET_KEY, QUOTALEDGER_MAX_REQUESTS_PER_ADDRESS="4096")
    command = [QUOTALEDGER, "serve", *_serve_flags(port, database_url)]
    return _wait_ready(_spawn(name, command, env, work, port), "/healthz")


def start_passthrough(upstream: str, work: Path) -> Server:
    port = free_port()
    env = clean_env(QLB_UPSTREAM=upstream, QUOTALEDGER_ADMIN_PASSWORD="ceiling-admin-password")
    command = [
        PYTHON,
        str(ROOT / "benchmarks" / "ceiling_app.py"),
        *_serve_flags(port, sqlite_url(work / "relay-ceiling.db")),
    ]
    server = _wait_ready(_spawn("relay-ceiling", command, env, work, port), "/__ceiling__")
    if httpx.get(server.base_url + "/__ceiling__", timeout=5).status_code != 204:
        server.stop()
        raise RuntimeError("the pass-through launcher did not swap serve's engine target")
    return server


def setup_postgres(bench: Bench, upstream: str) -> None:
    import psycopg

    name = f"quotaledger_relaybench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES + "/postgres", autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _postgres_databases.append(name)
    url = f"{POSTGRES}/{name}"
    code = (
        "import sys; from quotaledger.store.database import Database; "
        "from quotaledger.store.migrate import upgrade; "
        "d = Database(sys.argv[1]); upgrade(d); d.dispose()"
    )
    subprocess.run([PYTHON, "-c", code, url], env=clean_env(), check=True, capture_output=True)
    key = provision(url, upstream)
    many = provision_many(url, bench.workdir / "relay-pg-keys.txt")
    for instance in ("relay-pg-a", "relay-pg-b"):
        bench.servers[instance] = start_relay(instance, url, bench.workdir)
        _keys[instance] = key
        _many_keys[instance] = many


def drop_postgres() -> None:
    if not _postgres_databases:
        return
    import psycopg

    with psycopg.connect(POSTGRES + "/postgres", autocommit=True) as conn:
        for name in _postgres_databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _postgres_databases.clear()


def start_litellm(upstream: str, work: Path) -> Server:
    """LiteLLM's proxy: one model on the fake upstream, a master key, no database."""
    config = work / "litellm.yaml"
    config.write_text(
        json.dumps(
            {  # JSON is YAML
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": upstream + "/v1",
                            "api_key": "sk-fake",
                        },
                    }
                ],
                "general_settings": {"master_key": LITELLM_KEY},
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    port = free_port()
    env = clean_env(LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False", DISABLE_SCHEMA_UPDATE="true")
    env.pop("DATABASE_URL", None)
    command = [
        LITELLM,
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    server = _spawn("litellm", command, env, work, port)
    return _wait_ready(server, "/health/liveliness", timeout=180)


# ---------------------------------------------------------------- wrk cases


def cases(bench: Bench) -> list[Case]:
    if not bench.wants("relay"):
        return []  # `--only relay-streams`
    chat = "/v1/chat/completions"

    def case(
        name: str, label: str, server: str, connections: int | None = None, also: str | None = None
    ) -> Case:
        env = {"QLB_TOKEN": _keys[server], "QLB_MODEL": MODEL}
        return Case(name, label, server, chat, "chat.lua", 200, env, connections, also=also)

    def spread(name: str, label: str, server: str, also: str | None = None) -> Case:
        env = {"QLB_TOKENS_FILE": str(_many_keys[server]), "QLB_MODEL": MODEL}
        return Case(name, label, server, chat, "chat_many.lua", 200, env, also=also)

    found = [
        case("relay-ceiling", "ceiling: bare pass-through", "relay-ceiling"),
        case("relay", "relay, SQLite", "relay"),
        spread("relay-many", f"relay, SQLite, {MANY_USERS} users", "relay"),
    ]
    if "relay-pg-a" in bench.servers:
        found.append(
            case("relay-pg", "relay, PostgreSQL, 2 instances", "relay-pg-a", also="relay-pg-b")
        )
        found.append(
            spread(
                "relay-pg-many",
                f"relay, PostgreSQL, 2 instances, {MANY_USERS} users",
                "relay-pg-a",
                also="relay-pg-b",
            )
        )
    if "litellm" in bench.servers:
        found.append(case("litellm", "LiteLLM proxy", "litellm"))
    found += [
        case("direct-c1", "upstream direct, c=1", "upstream", 1),
        case("relay-ceiling-c1", "pass-through, c=1", "relay-ceiling", 1),
        case("relay-c1", "relay, c=1", "relay", 1),
    ]
    if "litellm" in bench.servers:
        found.append(case("litellm-c1", "LiteLLM, c=1", "litellm", 1))
    return found


# ---------------------------------------------------------------- streams (not wrk)


STREAM_RAMP_SECONDS = 2.0  # the ramped variant opens the 1,000 streams over this long


def measure(bench: Bench, cases: list[Case]) -> tuple[str, dict[str, Any]]:
    """The streams, all opened at once and then ramped, each straight at the upstream, through
    the bare pass-through and through a fresh relay (its VmHWM is the streams' peak, not the
    wrk rounds'); then the sequential `/v1/messages` runs."""
    upstream = bench.servers["upstream"].base_url
    chat = "/v1/chat/completions"
    figures: dict[str, Any] = {"cpu": cpu_per_request(bench)}
    if os.environ.get("QLB_RELAY_STREAMS") == "0":  # the non-stream cases only
        log("streams skipped (QLB_RELAY_STREAMS=0)")
        return "relay_streams", figures
    relay = start_relay("relay-streams", sqlite_url(bench.workdir / "relay.db"), bench.workdir)
    bench.servers["relay-streams"] = relay
    warm_up(relay, _keys["relay"])
    for variant, ramp in (("at_once", 0.0), ("ramped", STREAM_RAMP_SECONDS)):
        how = "opened at once" if not ramp else f"opened over {ramp:g} s"
        found: dict[str, Any] = {}
        for name, server in (
            ("direct", bench.servers["upstream"]),
            ("ceiling", bench.servers["relay-ceiling"]),
            ("relay", relay),
        ):
            log(f"streams: {STREAMS} x {STREAM_EVENTS} events, {how}, {name}")
            script(upstream, chat, STREAMS, STREAM_EVENTS - 4, STREAM_SECONDS)
            token = _keys["relay"] if name == "relay" else "none"
            waited = run_queue_wait(server.worker_pid)
            found[name] = stream_load(server.base_url + chat, token, ramp=ramp)
            found[name]["run_queue_wait_s"] = round(run_queue_wait(server.worker_pid) - waited, 1)
        figures[variant] = found
    figures["relay_peak_rss_mb"] = peak_rss_mb(relay)
    relay.stop()
    log(f"{MESSAGES_RUNS} sequential streamed /v1/messages: pass-through, relay")
    messages: dict[str, Any] = {"relay-ceiling": [], "relay": []}
    for _ in range(2):  # alternate, twice: the machine's noise hits both alike
        for name in messages:
            script(upstream, "/v1/messages", MESSAGES_RUNS // 2, 10, 0.0)
            url = bench.servers[name].base_url + "/v1/messages"
            messages[name].append(
                stream_load(
                    url,
                    _keys[name],
                    streams=MESSAGES_RUNS // 2,
                    events=16,
                    seconds=0.0,
                    anthropic=True,
                    sequential=True,
                    expect=10,
                )
            )
    figures["messages"] = messages
    return "relay_streams", figures


CPU_ROUNDS, CPU_SECONDS = 3, 3.0


def cpu_per_request(bench: Bench) -> dict[str, list[float]]:
    """The server process's CPU time (user + system, all its threads) per answered request
    under the throughput load, ceiling and relay in turn, `CPU_ROUNDS` times: on a machine
    shared with other work a run's req/s moves with its neighbours, its CPU per request
    much less. ceiling CPU / relay CPU is the throughput ratio the relay would reach on a
    core of its own."""
    from loadgen import run_wrk

    figures: dict[str, list[float]] = {"relay-ceiling": [], "relay": []}
    for _ in range(CPU_ROUNDS):
        for name in figures:
            server = bench.servers[name]
            env = {"QLB_TOKEN": _keys[name], "QLB_MODEL": MODEL}
            before = server.cpu_seconds()
            done = run_wrk(
                server.base_url + "/v1/chat/completions",
                "chat.lua",
                duration=CPU_SECONDS,
                connections=bench.config.connections,
                env=env,
            )
            used = server.cpu_seconds() - before
            answered = max(done.requests - done.non_2xx, 1)
            figures[name].append(round(used / answered * 1e6, 1))
            log(f"cpu {name:14} {figures[name][-1]:7.1f} µs/request ({answered} answered)")
    if "relay-pg-a" in bench.servers:
        figures["relay-pg-many"] = cpu_postgres(bench)
    return figures


def cpu_postgres(bench: Bench) -> list[float]:
    """The two PostgreSQL instances' CPU together per answered request under the 64-user
    load (not PostgreSQL's own): whether they are CPU-bound or waiting on the database."""
    from harness import run_split

    instances = [bench.servers[name] for name in ("relay-pg-a", "relay-pg-b")]
    env = {"QLB_TOKENS_FILE": str(_many_keys["relay-pg-a"]), "QLB_MODEL": MODEL}
    load = Case("cpu", "cpu", "relay-pg-a", "/v1/chat/completions", "chat_many.lua", 200, env,
                also="relay-pg-b")  # fmt: skip
    found = []
    for _ in range(CPU_ROUNDS):
        before = sum(server.cpu_seconds() for server in instances)
        done = run_split(bench, load, CPU_SECONDS)
        used = sum(server.cpu_seconds() for server in instances) - before
        answered = max(done.requests - done.non_2xx, 1)
        found.append(round(used / answered * 1e6, 1))
        log(f"cpu relay-pg x2, many {found[-1]:7.1f} µs/request ({answered} answered)")
    return found


def warm_up(server: Server, key: str) -> None:
    """A few requests first: the first one loads the tokenizer (cl100k, ~0.1 s on an idle
    core, on the event loop) and opens the pools; the streams measure the steady state."""
    for stream in (False, True, False):
        reply = httpx.post(
            server.base_url + "/v1/chat/completions",
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": MODEL,
                "stream": stream,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "Say hello."}],
            },
        )
        reply.raise_for_status()


def script(upstream: str, path: str, times: int, words: int, seconds: float) -> None:
    """Queue the stream scenario on the fake upstream: a relay forwards no X-Fake-* header."""
    httpx.post(upstream + "/_control/reset", timeout=10)
    scenario: dict[str, Any] = {"text": "word " * words, "stamp": True}
    if seconds:
        scenario["duration"] = seconds
    reply = httpx.post(
        upstream + "/_control/script",
        timeout=10,
        json={"scenario": scenario, "path": path, "times": times},
    )
    reply.raise_for_status()


def stream_load(
    url: str,
    token: str,
    *,
    header: bool = False,
    streams: int = STREAMS,
    events: int = STREAM_EVENTS,
    seconds: float = STREAM_SECONDS,
    anthropic: bool = False,
    sequential: bool = False,
    expect: int = 0,
    ramp: float = 0.0,
) -> dict[str, Any]:
    command = [
        PYTHON,
        str(ROOT / "benchmarks" / "relay_streams.py"),
        url,
        "--streams",
        str(streams),
        "--events",
        str(events),
        "--seconds",
        str(seconds),
        "--sample-every",
        "5",
        "--expect",
        str(expect),
    ]
    if header:
        command.append("--header-scenario")
    if anthropic:
        command.append("--anthropic")
    if sequential:
        command.append("--sequential")
    if ramp:
        command += ["--ramp", str(ramp)]
    done = subprocess.run(
        pinned(CLIENT_CORE, command),
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(QLB_TOKEN=token),
        timeout=seconds * 6 + 300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stream client failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_queue_wait(pid: int) -> float:
    """Seconds a process's main thread (a server's event loop) waited, runnable, for a core:
    on a shared machine, other processes on the server core delay every event that long."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def peak_rss_mb(server: Server) -> dict[str, float]:
    """The server's memory at its peak: the answering worker's VmHWM (the kernel's
    high-water mark of its resident memory: the streams are all there) plus the memory the
    other processes (Granian's supervisor) hold privately now. Their own high-water marks
    are from start-up (the supervisor migrates the database before it forks the worker),
    and the pages they share with the worker are in the worker's figure already."""
    worker = server.worker_pid
    others = [pid for pid in server.processes() if pid != worker]
    worker_mb = _kb(f"/proc/{worker}/status", "VmHWM") / 1024
    private = ("Private_Clean", "Private_Dirty")
    others_mb = sum(_kb(f"/proc/{pid}/smaps_rollup", f) for pid in others for f in private) / 1024
    return {
        "total": round(worker_mb + others_mb, 1),
        "worker_peak": round(worker_mb, 1),
        "others_private": round(others_mb, 1),
    }


def _kb(path: str, field: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- rows


def rows(bench: Bench, summary: dict[str, Any], extra: dict[str, Any]) -> list[dict[str, Any]]:
    drop_postgres()
    out: list[dict[str, Any]] = []
    ceiling = summary.get("relay-ceiling")
    ceil_rps = ceiling["requests_per_s"] if ceiling else None
    if ceiling:
        out.append(
            ratio_row(
                "relay ceiling: bare pass-through",
                ceil_rps,
                "req/s",
                None,
                "",
                None,
                note=f"p99 {ceiling['p99_ms']:.2f} ms",
            )
        )
    if not bench.wants("relay"):  # `--only relay-streams`
        return _stream_rows(extra.get("relay_streams"))
    for name, metric, target in (
        ("relay", "relay non-stream, SQLite FULL, 1 user", 0.6),
        ("relay-many", f"relay non-stream, SQLite FULL, {MANY_USERS} users", 0.6),
        ("relay-pg", "relay non-stream, PostgreSQL x2, 1 user", 0.6),
        ("relay-pg-many", f"relay non-stream, PostgreSQL x2, {MANY_USERS} users", 0.6),
    ):
        out += _throughput_row(summary, name, metric, ceil_rps, target)
    out += _litellm_rows(bench, summary)
    out += _latency_rows(summary)
    out += _cpu_rows((extra.get("relay_streams") or {}).get("cpu"))
    out += _stream_rows(extra.get("relay_streams"))
    for note in bench.notes:
        out.append(ratio_row(f"note: {note}", None, "", None, "", None))
    return out


def _throughput_row(
    summary: dict[str, Any], name: str, metric: str, ceil_rps: float | None, target: float
) -> list[dict[str, Any]]:
    case = summary.get(name)
    if case is None:
        return [
            ratio_row(
                metric,
                None,
                "req/s",
                ceil_rps,
                f"≥ {target:g}x",
                None,
                note="not run (see the notes)",
            )
        ]
    rps = case["requests_per_s"]
    ratio = rps / ceil_rps if ceil_rps else None
    note = f"p99 {case['p99_ms']:.2f} ms"
    runs = summary["relay-ceiling"]["runs"] if "relay-ceiling" in summary else []
    paired = [
        c["requests_per_s"] / r["requests_per_s"]
        for c, r in zip(case["runs"], runs, strict=False)
        if r["requests_per_s"]
    ]
    if len(paired) > 1:
        note += f"; per round {min(paired):.2f}-{max(paired):.2f}x"
    if not case["statuses_as_expected"]:
        note += "; UNEXPECTED STATUSES"
    passed = None if ratio is None else ratio >= target and case["statuses_as_expected"]
    return [ratio_row(metric, rps, "req/s", ceil_rps, f"≥ {target:g}x", passed, ratio, note)]


def _litellm_rows(bench: Bench, summary: dict[str, Any]) -> list[dict[str, Any]]:
    lite, relay = summary.get("litellm"), summary.get("relay")
    if lite is None:
        why = next((n for n in bench.notes if "LiteLLM" in n), "not run")
        return [
            ratio_row("LiteLLM proxy non-stream", None, "req/s", None, "relay ≥ 3x", None, note=why)
        ]
    ratio = (
        relay["requests_per_s"] / lite["requests_per_s"]
        if relay and lite["requests_per_s"]
        else None
    )
    note = f"p99 {lite['p99_ms']:.2f} ms; relay/LiteLLM {ratio:.2f}x" if ratio else ""
    if not lite["statuses_as_expected"]:
        note += "; UNEXPECTED STATUSES"
    return [
        ratio_row(
            "LiteLLM proxy non-stream (relay ÷ it)",
            lite["requests_per_s"],
            "req/s",
            None,
            "relay ≥ 3x",
            None if ratio is None else ratio >= 3,
            ratio,
            note,
        )
    ]


def _added_rows(label: str, found: dict[str, Any]) -> list[dict[str, Any]]:
    """Added TTFT and per-event transit time (p50) of the relay and of the bare pass-through,
    both against the upstream direct: the pass-through's is what any proxy on this core
    pays for the same load, the relay's minus it what metering adds."""
    direct, ceiling, relay = found["direct"], found["ceiling"], found["relay"]
    out = []
    for what, field, goal in (("TTFT", "ttfe_ms", 2.0), ("per-event latency", "transit_ms", 1.0)):
        d, c, r = (x[field]["p50"] for x in (direct, ceiling, relay))
        added = r - d
        out.append(
            ratio_row(
                f"{STREAMS} streams {label}: added {what} p50",
                round(added, 2),
                "ms",
                None,
                f"≤ {goal:g} ms",
                added <= goal,
                note=f"relay {r:.1f} ms, pass-through {c:.1f} ms (added {c - d:+.1f}), "
                f"direct {d:.1f} ms; relay - pass-through {r - c:+.1f} ms; p99 relay "
                f"{relay[field]['p99']:.1f} / pass-through {ceiling[field]['p99']:.1f} / "
                f"direct {direct[field]['p99']:.1f} ms; waited for a core: relay "
                f"{relay['run_queue_wait_s']} s, pass-through {ceiling['run_queue_wait_s']} s",
            )
        )
    return out


def _latency_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    direct = summary.get("direct-c1")
    if direct is None:
        return []
    out = [
        ratio_row(
            "upstream direct, c=1",
            direct["p50_ms"],
            "ms p50",
            None,
            "",
            None,
            note=f"p99 {direct['p99_ms']:.2f} ms",
        )
    ]
    for name, metric, goal50, goal99 in (
        ("relay-ceiling-c1", "added latency: pass-through", None, None),
        ("relay-c1", "added latency: relay", 0.5, 2.0),  # issue 25: p50, p99
        ("litellm-c1", "added latency: LiteLLM", None, None),
    ):
        case = summary.get(name)
        if case is None:
            continue
        p50 = case["p50_ms"] - direct["p50_ms"]
        p99 = case["p99_ms"] - direct["p99_ms"]
        passed = None if goal50 is None else (p50 <= goal50 and p99 <= (goal99 or 0))
        target = f"≤ {goal50:g} / {goal99:g} ms" if goal50 else ""
        out.append(
            ratio_row(
                metric, round(p50, 3), "ms p50", None, target, passed, note=f"p99 +{p99:.2f} ms"
            )
        )
    return out


def _cpu_rows(cpu: dict[str, list[float]] | None) -> list[dict[str, Any]]:
    if not cpu or not cpu.get("relay"):
        return []
    ceiling, relay = (statistics.median(cpu[name]) for name in ("relay-ceiling", "relay"))
    ratios = [c / r for c, r in zip(cpu["relay-ceiling"], cpu["relay"], strict=True) if r]
    out = []
    if cpu.get("relay-pg-many"):
        pg = statistics.median(cpu["relay-pg-many"])
        out.append(
            ratio_row(
                f"CPU per request: ceiling ÷ relay, PostgreSQL x2, {MANY_USERS} users",
                round(pg, 1),
                "µs/req",
                round(ceiling, 1),
                "",
                None,
                ceiling / pg,
                note="both instances' CPU per answered request (not PostgreSQL's); per round "
                + ", ".join(f"{v:g}" for v in cpu["relay-pg-many"]),
            )
        )
    return [
        *out,
        ratio_row(
            "CPU per request: ceiling ÷ relay, SQLite FULL",
            round(relay, 1),
            "µs/req",
            round(ceiling, 1),
            "≥ 0.6x",
            ceiling / relay >= 0.6,
            ceiling / relay,
            note=f"server process CPU (all threads) per answered request; per round "
            f"{min(ratios):.2f}-{max(ratios):.2f}x",
        ),
    ]


def _stream_rows(streams: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not streams or "at_once" not in streams:
        return []
    rss = streams["relay_peak_rss_mb"]
    at_once, ramped = streams["at_once"], streams["ramped"]
    relays = [at_once["relay"], ramped["relay"]]
    completed = "; ".join(
        f"{v}: relay {f['relay']['completed']} completed, {f['relay']['dropped']} dropped "
        f"(ceiling {f['ceiling']['dropped']}, direct {f['direct']['dropped']} dropped), "
        f"peak {f['relay']['peak_concurrent']} open"
        for v, f in (("at once", at_once), (f"ramped over {STREAM_RAMP_SECONDS:g} s", ramped))
    )
    dropped = sum(r["dropped"] for r in relays)
    out = [
        ratio_row(
            f"{STREAMS} streams: peak RSS",
            rss["total"],
            "MB",
            None,
            "< 250 MB",
            rss["total"] < 250,
            note=f"worker's peak {rss['worker_peak']} MB + supervisor {rss['others_private']} MB",
        ),
        ratio_row(
            f"{STREAMS} streams: none dropped",
            dropped,
            "dropped",
            None,
            "0",
            dropped == 0,
            note=completed,
        ),
    ]
    for label, found in (
        ("opened at once", at_once),
        (f"opened over {STREAM_RAMP_SECONDS:g} s", ramped),
    ):
        out += _added_rows(label, found)
    messages = streams.get("messages")
    if messages:
        ceil = sorted(r["ttfe_ms"]["p50"] for r in messages["relay-ceiling"])[0]
        rel = sorted(r["ttfe_ms"]["p50"] for r in messages["relay"])[0]
        out.append(
            ratio_row(
                "/v1/messages streamed: added time to first event p50",
                round(rel - ceil, 2),
                "ms",
                None,
                "",
                None,
                note=f"relay {rel:.2f} ms vs pass-through {ceil:.2f} ms",
            )
        )
    return out
