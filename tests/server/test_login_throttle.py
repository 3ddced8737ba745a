"""Password guessing slowed down (issue 26), on a real `quotaledger serve` on loopback:
after a few wrong passwords for one account from one address, each further attempt from
there is refused with 429 and Retry-After until the wait is over, in the same words for an
unknown account; other addresses are not held up; the right password after the wait works.
Distinct client addresses are real ones: Linux answers the whole of 127.0.0.0/8."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quotaledger.server.login_throttle import LoginThrottle, MemoryCounts, Policy, RedisCounts
from support import LiveServer, free_port, start_server, stop_server

FREE = 3
MAX_DELAY = 2  # seconds: the wait stops doubling there, so the test waits little
ATTEMPTS = 12  # enough for the wait to be met however slowly the machine answers
THROTTLE_ENV = {
    "QUOTALEDGER_LOGIN_FREE_FAILURES": str(FREE),
    "QUOTALEDGER_LOGIN_ADDRESS_FREE_FAILURES": "6",
    "QUOTALEDGER_LOGIN_MAX_DELAY": str(MAX_DELAY),
    # The attempt rates out of the way: what refuses here is the wait alone.
    "QUOTALEDGER_RATE_LIMIT_LOGIN": "off",
    "QUOTALEDGER_RATE_LIMIT_LOGIN_ADDRESS": "off",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("throttle")
    live = start_server(f"sqlite:///{folder / 'throttle.db'}", folder, THROTTLE_ENV)
    yield live
    stop_server(live)


def _from(server: LiveServer, address: str) -> httpx.Client:
    """A client whose connections come from `address` (on loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=30)


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/user/login", json={"username": username, "password": password})


def _guess_until_refused(client: httpx.Client, username: str) -> list[httpx.Response]:
    answers = []
    for attempt in range(ATTEMPTS):
        answers.append(_login(client, username, f"guess-number-{attempt}"))
        if answers[-1].status_code == 429:
            break
    return answers


def _user(server: LiveServer, name: str) -> str:
    password = f"{name}-password-123"
    made = server.cli("user", "create", name, "--password-stdin", input=password + "\n")
    assert made.returncode == 0, made.stderr
    return password


def test_wrong_passwords_are_refused_with_retry_after_then_the_right_one_works(
    server: LiveServer,
) -> None:
    password = _user(server, "alice")
    with _from(server, "127.0.0.11") as guesser, _from(server, "127.0.0.12") as owner:
        answers = _guess_until_refused(guesser, "alice")
        codes = [a.status_code for a in answers]
        assert codes[:FREE] == [401] * FREE  # the first wrong passwords are answered
        assert codes[-1] == 429, codes
        refused = answers[-1]
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= MAX_DELAY
        assert refused.json()["message"] == f"too many failed attempts: try again in {wait} s"
        # Refused at once, the password unchecked: even the right one waits.
        early = _login(guesser, "alice", password)
        assert early.status_code == 429 and "retry-after" in early.headers

        assert _login(owner, "alice", password).status_code == 200  # another address

        time.sleep(int(early.headers["retry-after"]))
        assert _login(guesser, "alice", password).status_code == 200
        # The right password cleared the count: the next mistake is answered again.
        assert _login(guesser, "alice", "one-more-typo").status_code == 401


def test_an_unknown_account_is_refused_in_the_same_words(server: LiveServer) -> None:
    _user(server, "bob")
    with _from(server, "127.0.0.21") as one, _from(server, "127.0.0.22") as two:
        known = _guess_until_refused(one, "bob")
        unknown = _guess_until_refused(two, "nobody-by-that-name")
    assert [a.status_code for a in known][:FREE] == [401] * FREE
    assert [a.status_code for a in unknown][:FREE] == [401] * FREE
    said = {a.json()["message"].split(" in ")[0] for a in (known[-1], unknown[-1])}
    assert [known[-1].status_code, unknown[-1].status_code] == [429, 429]
    assert said == {"too many failed attempts: try again"}
    assert known[0].json()["message"] == unknown[0].json()["message"]


def test_one_address_trying_many_accounts_waits_too(server: LiveServer) -> None:
    password = _user(server, "carol")
    with _from(server, "127.0.0.31") as sprayer, _from(server, "127.0.0.32") as other:
        codes = []
        for n in range(ATTEMPTS):  # one failure per account: only the address's count grows
            codes.append(_login(sprayer, f"someone-{n}", "a-common-password").status_code)
            if codes[-1] == 429:
                break
        assert codes[:6] == [401] * 6 and codes[-1] == 429, codes
        assert _login(sprayer, "carol", password).status_code == 429  # any account waits
        assert _login(other, "carol", password).status_code == 200


def test_the_system_token_password_counts_as_a_login_does(server: LiveServer) -> None:
    password = _user(server, "dave")
    with _from(server, "127.0.0.41") as browser:
        assert _login(browser, "dave", password).status_code == 200
        csrf = {"X-CSRF-Token": browser.cookies["ql_csrf"]}
        codes = []
        for attempt in range(ATTEMPTS):
            answer = browser.post(
                "/api/user/token", json={"password": f"no-{attempt}"}, headers=csrf
            )
            codes.append(answer.status_code)
            if answer.status_code == 429:
                break
        assert codes[:FREE] == [401] * FREE and codes[-1] == 429, codes
        assert "retry-after" in answer.headers
        # And the login from there waits as well: the same account and address.
        assert _login(browser, "dave", password).status_code == 429


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """`redis://127.0.0.1:<port>/0` of a redis-server of this test's own."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                         text=True).stdout.strip() != "PONG":  # fmt: skip
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("the private redis-server did not start")
        time.sleep(0.05)
    yield url
    process.kill()
    process.wait()


@pytest.mark.redis
def test_with_redis_two_instances_share_the_counts(tmp_path: Path, private_redis: str) -> None:
    """Wrong passwords on one instance make the other refuse: a guesser gains nothing by
    spreading over instances behind a load balancer."""
    database_url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**THROTTLE_ENV, "QUOTALEDGER_REDIS_URL": private_redis}
    first = start_server(database_url, tmp_path, env)
    try:
        second = start_server(database_url, tmp_path, env)
        try:
            password = _user(first, "erin")
            with _from(first, "127.0.0.51") as one, _from(second, "127.0.0.51") as two:
                codes = [_login(one, "erin", f"guess-{n}").status_code for n in range(FREE)]
                assert codes == [401] * FREE
                refused = _login(two, "erin", password)
                assert refused.status_code == 429 and "retry-after" in refused.headers
        finally:
            stop_server(second)
    finally:
        stop_server(first)


async def test_with_redis_away_each_instance_counts_on_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = Policy(free=1, address_free=100, max_delay_ms=60_000)
    nowhere = RedisCounts(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    throttle = LoginThrottle(policy, nowhere)
    with caplog.at_level(logging.ERROR, "quotaledger.security"):
        await throttle.failed("frank", "192.0.2.7")
        wait = await throttle.wait("frank", "192.0.2.7")
    await throttle.aclose()
    assert 1 <= wait <= 60  # counted here: the wait holds without Redis
    assert caplog.text.count("Redis unavailable") == 1  # logged once, not per attempt
    assert await throttle.wait("frank", "192.0.2.8") == 0


async def test_waits_double_from_one_second_up_to_the_most() -> None:
    policy = Policy(free=3, address_free=100, max_delay_ms=5_000)
    counts = MemoryCounts()
    locks = [await counts.failed([("k", 3)], 0, policy) for _ in range(7)]
    assert locks == [0, 0, 1_000, 2_000, 4_000, 5_000, 5_000]
    assert await counts.locked_until(["k", "other"], 0) == 5_000
    await counts.clear("k")
    assert await counts.locked_until(["k"], 0) == 0


async def test_counts_are_forgotten_a_while_after_the_last_failure() -> None:
    policy = Policy(free=1, address_free=100, max_delay_ms=1_000)
    counts = MemoryCounts()
    await counts.failed([("k", 1)], 0, policy)
    later = policy.memory_ms + 1
    assert await counts.failed([("k", 1)], later, policy) == later + 1_000  # the first again


async def test_memory_counts_stay_bounded_dropping_the_least_recent() -> None:
    policy = Policy(free=1, address_free=100, max_delay_ms=1_000)
    counts = MemoryCounts(most=3)
    for key in ("a", "b", "c", "a", "d"):
        await counts.failed([(key, 1)], 0, policy)
    assert await counts.locked_until(["b"], 0) == 0  # the least recent went first
    assert await counts.locked_until(["a"], 0) == 1_000
