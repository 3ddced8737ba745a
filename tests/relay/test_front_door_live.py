"""The front door of a real `quotaledger serve` (Granian) in front of the fake upstream, with
real clients (SPEC §14, issue 25 items 1 and 5, issue 26 item 2):

- curl `--http2` (which offers `Upgrade: h2c`), curl `--http2-prior-knowledge` and
  curl_cffi impersonating Chrome post a login and a chat, and are served with their body;
- large anonymous bodies are refused from the head, unread: ten 30 MB posts barely move the
  worker's memory;
- many connections sending a body a byte at a time from one address are bounded (429 past
  the per-address limit, 408 at the body deadline) while a client from another loopback
  address is served.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from relay_live import ANSWER, MESSAGES, MODEL, Customer, Relay, customer, relay_server
from test_relay_load_faults import PeakRss

BODY_TIMEOUT = 2.0
PER_ADDRESS = 20
MB = 1_000_000


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    env = {
        "QUOTALEDGER_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "QUOTALEDGER_MAX_REQUESTS_PER_ADDRESS": str(PER_ADDRESS),
        "QUOTALEDGER_RATE_LIMIT_LOGIN_ADDRESS": "1000/minute",
    }
    yield from relay_server(tmp_path_factory, env=env)


@pytest.fixture(scope="module")
def alice(relay: Relay) -> Customer:
    return customer(relay)


def _login_name(relay: Relay, who: Customer) -> str:
    with relay.database.read() as connection:
        return str(
            connection.exec_driver_sql(
                "SELECT username FROM users WHERE id = ?", (who.user_id,)
            ).scalar_one()
        )


CHAT = orjson.dumps({"model": MODEL, "messages": MESSAGES}).decode()


# ------------------------------------------------------------------ real HTTP clients

needs_curl = pytest.mark.skipif(
    shutil.which("curl") is None
    or "HTTP2" not in subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout,
    reason="needs curl with HTTP/2",
)


def _curl(flag: str, url: str, body: str, *headers: str) -> tuple[str, str]:
    """curl's answer body and the HTTP version it spoke."""
    args = ["curl", "-sS", flag, "-w", "\n%{http_version}", "-H", "Content-Type: application/json"]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run(
        [*args, "--data-binary", body, url], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    answer, _, version = done.stdout.rpartition("\n")
    return answer, version


@needs_curl
@pytest.mark.parametrize(
    ("flag", "version"), [("--http2", "1.1"), ("--http2-prior-knowledge", "2")]
)
def test_curl_over_http2_posts_a_login_and_a_chat_with_their_bodies(
    relay: Relay, alice: Customer, flag: str, version: str
) -> None:
    login = orjson.dumps({"username": _login_name(relay, alice), "password": "password-123"})
    logged_in, spoken = _curl(flag, relay.server.base_url + "/api/user/login", login.decode())
    chat, _ = _curl(
        flag, relay.v1 + "/chat/completions", CHAT, f"Authorization: Bearer {alice.key}"
    )

    assert orjson.loads(logged_in)["success"] is True, logged_in
    assert orjson.loads(chat)["choices"][0]["message"]["content"] == ANSWER
    assert spoken == version  # an h2c offer is served as HTTP/1.1, prior knowledge as h2


def test_curl_cffi_impersonating_chrome_posts_a_login_and_a_chat(
    relay: Relay, alice: Customer
) -> None:
    requests = pytest.importorskip("curl_cffi.requests")
    login = {"username": _login_name(relay, alice), "password": "password-123"}
    with requests.Session(impersonate="chrome") as session:
        logged_in = session.post(relay.server.base_url + "/api/user/login", json=login)
        chat = session.post(
            relay.v1 + "/chat/completions",
            data=CHAT,
            headers={"Authorization": f"Bearer {alice.key}", "Content-Type": "application/json"},
        )

    assert logged_in.status_code == 200, logged_in.text
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"] == ANSWER


# ------------------------------------------------------------------ large bodies


def _post_large(port: int, size: int, headers: str = "") -> bytes:
    """Send a chat head declaring `size` bytes, then as much of the body as the server takes;
    what it answered (b"" if it closed before answering)."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        chunk = b" " * 65536
        with contextlib.suppress(OSError):
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
        answer = b""
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                answer += data
    return answer


def _port(relay: Relay) -> int:
    return int(relay.server.base_url.rsplit(":", 1)[1])


def test_ten_anonymous_30_mb_posts_are_refused_unread_and_cost_no_memory(relay: Relay) -> None:
    answers: list[bytes] = []

    def post() -> None:
        answers.append(_post_large(_port(relay), 30 * MB))

    with PeakRss(relay.server.worker_pid) as memory:
        threads = [threading.Thread(target=post) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert len(answers) == 10
    assert all(a.startswith(b"HTTP/1.1 401 ") for a in answers if a), answers
    assert memory.growth < 50, (memory.before, memory.peak)


def test_a_large_body_with_the_key_of_an_empty_account_is_refused_unread(relay: Relay) -> None:
    empty = customer(relay, quota=0)

    answer = _post_large(_port(relay), 30 * MB, f"Authorization: Bearer {empty.key}\r\n")

    assert answer.startswith(b"HTTP/1.1 402 "), answer[:200]
    assert b'"insufficient_quota"' in answer  # OpenAI's error shape


def test_a_large_body_with_a_good_key_is_read_and_relayed(relay: Relay, alice: Customer) -> None:
    padding = "x" * 200_000  # over the API's 64 KiB: through the head check and the budget
    body = {"model": MODEL, "messages": [{"role": "user", "content": padding}]}
    answer = httpx.post(
        relay.v1 + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {alice.key}"},
        timeout=30,
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == ANSWER


def test_a_body_declared_over_the_relay_limit_is_413_in_openai_shape(
    relay: Relay, alice: Customer
) -> None:
    answer = _post_large(_port(relay), 40 * 1024 * 1024, f"Authorization: Bearer {alice.key}\r\n")

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_too_large"


# ------------------------------------------------------------------ slow bodies


def _slow_login(port: int) -> socket.socket:
    """A login whose body (1,000 bytes declared) will come a byte at a time."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 10)
    sock.sendall(
        b"POST /api/user/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    return sock


def _status(sock: socket.socket) -> int | None:
    with contextlib.suppress(OSError):
        first = sock.recv(64)
        if first.startswith(b"HTTP/1.1 "):
            return int(first.split(b" ")[1])
    return None


def _served_from(address: str, base_url: str) -> int:
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=5) as client:
        return client.get(base_url + "/api/status").status_code


def test_slow_bodies_from_one_address_are_bounded_and_others_are_served(relay: Relay) -> None:
    port = _port(relay)
    held = [_slow_login(port) for _ in range(PER_ADDRESS)]
    time.sleep(0.3)  # let the server take them all in before the extra ones come
    extra = [_slow_login(port) for _ in range(3 * PER_ADDRESS)]
    try:
        refused = [_status(sock) for sock in extra]
        served = _served_from("127.0.0.2", relay.server.base_url)
        began = time.monotonic()
        for sock in held:
            with contextlib.suppress(OSError):
                sock.send(b" ")  # a byte now and then: never the whole body
        timed_out = [_status(sock) for sock in held]
        took = time.monotonic() - began
    finally:
        for sock in held + extra:
            sock.close()

    assert refused == [429] * len(extra)
    assert served == 200
    assert timed_out == [408] * PER_ADDRESS
    assert took < BODY_TIMEOUT + 5
    assert _served_from("127.0.0.1", relay.server.base_url) == 200  # the address is free again
