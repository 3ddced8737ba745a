"""A hostile HTTP server on 127.0.0.1, for the client's and the monitor's tests: answers that
never end, inflate to gigabytes, or arrive one byte at a time. And `run_measured`, which runs
a command in a subprocess and reports its peak memory.

Each answer is a function of the connection, written on the raw socket: the stdlib's
`http.server` cannot send a body that never ends or a status line by the byte.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

Answer = Callable[[socket.socket, threading.Event], None]

JSON_HEAD = b'{"success": true, "message": "'


class HostileServer:
    """Answers every request with `answer(connection, stopped)`, each in its own thread."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopped = threading.Event()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                _read_head(connection)
                self._answer(connection, self._stopped)
            except OSError:  # the client gave up: what these answers are for
                pass


def _read_head(connection: socket.socket) -> None:
    received = b""
    while b"\r\n\r\n" not in received:
        data = connection.recv(4096)
        if not data:
            raise ConnectionResetError
        received += data


def _head(*headers: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", *headers, "", ""]
    return "\r\n".join(lines).encode()


@functools.cache
def gzip_bomb(size: int = 2_000_000) -> bytes:
    """About `size` bytes of gzip that inflate to ~1,000 times as much (2 MB: ~2 GB of a JSON
    string). Made of one deflate block repeated (a full flush resets the compressor, so each
    block is the same bytes); it has no trailer, which no reader gets to before its cap."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    start = compressor.compress(JSON_HEAD) + compressor.flush(zlib.Z_FULL_FLUSH)
    spaces = b" " * (1 << 20)
    block = compressor.compress(spaces) + compressor.flush(zlib.Z_FULL_FLUSH)
    return start + block * (size // len(block))


def bomb(*, labelled: bool = True) -> Answer:
    """A 2 MB gzip bomb, with `Content-Encoding: gzip` or (as some relays gzip) without."""

    def answer(connection: socket.socket, stopped: threading.Event) -> None:
        body = gzip_bomb()
        encoding = ["Content-Encoding: gzip"] if labelled else []
        connection.sendall(_head(*encoding, f"Content-Length: {len(body)}") + body)

    return answer


def endless(connection: socket.socket, stopped: threading.Event) -> None:
    """A chunked body that never ends (until the client hangs up)."""
    connection.sendall(_head("Transfer-Encoding: chunked"))
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b"x" * (1 << 16))
    connection.sendall(b"%x\r\n%s\r\n" % (len(JSON_HEAD), JSON_HEAD))
    while not stopped.is_set():
        connection.sendall(chunk)


def endless_redirect(connection: socket.socket, stopped: threading.Event) -> None:
    """A redirect (to itself) whose body never ends: httpx reads a redirect's body whole."""
    head = "HTTP/1.1 302 Found\r\nLocation: /api/user/self\r\nTransfer-Encoding: chunked\r\n\r\n"
    connection.sendall(head.encode())
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b"x" * (1 << 16))
    while not stopped.is_set():
        connection.sendall(chunk)


def drip(every: float, *, head_too: bool = False) -> Answer:
    """One byte every `every` seconds: of the body (a long one), or from the status line on."""

    def answer(connection: socket.socket, stopped: threading.Event) -> None:
        head = _head(f"Content-Length: {1 << 20}")
        dripped = head + JSON_HEAD + b"x" * (1 << 20) if head_too else JSON_HEAD
        if not head_too:
            connection.sendall(head)
        for byte in dripped:
            if stopped.wait(every):
                return
            connection.sendall(bytes([byte]))

    return answer


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mib: float
    seconds: float


ADDRESS_SPACE_LIMIT = 1 << 30
"""The command's address space is capped at 1 GiB, so that a regression fails with a
`MemoryError` instead of taking the (shared) test machine to gigabytes."""

# Run by a small Python of its own: a process started from pytest's (by fork or vfork)
# inherits pytest's resident size as its peak, even across exec.
_MEASURE = f"""
import os, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT}))
process = subprocess.Popen([sys.executable, "-m", "quotaledger", *sys.argv[2:]])
_, status, usage = os.wait4(process.pid, 0)
process.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as peak:
    peak.write(str(usage.ru_maxrss))
sys.exit(process.returncode)
"""


def run_measured(args: Sequence[str], env: dict[str, str], timeout: float = 60) -> Measured:
    """Run `python -m quotaledger ARGS` in a subprocess; its exit code, output, peak resident
    memory (the kernel's count for that process alone, from `wait4`) and duration."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(peak), *args],
            capture_output=True,
            env=env,
            timeout=timeout,
            text=True,
            check=False,
        )
        return Measured(
            result.returncode,
            result.stdout,
            result.stderr,
            int(peak.read_text()) / 1024,  # KiB on Linux
            time.monotonic() - started,
        )
