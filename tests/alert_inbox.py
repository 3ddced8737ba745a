"""A receiver of Apprise `json://` notifications on loopback (127.0.0.1 unless told), in a
thread: what the alert tests read instead of a real mail or chat service. It counts every
connection and every request, whatever its method, so that a test can prove it was not
reached at all; told to, it answers with a redirect instead."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_PATH = "hook-s3cr3t-webhook-token-0451"
"""The URL's path: the part of an Apprise URL that is often a secret (a webhook token)."""


@dataclass
class Inbox:
    port: int = 0
    host: str = "127.0.0.1"
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0  # answer this many POSTs with a 500 first
    connections: int = 0  # accepted, whatever came next
    requests: list[str] = field(default_factory=list)  # "METHOD path" of each request
    redirect_to: str | None = None  # answer every request with a 307 to this URL

    @property
    def url(self) -> str:
        return f"json://{self.netloc}/{SECRET_PATH}"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def reached(self) -> bool:
        """Whether anything connected (complete once `running_inbox` has ended)."""
        return self.connections > 0 or bool(self.requests)

    def titles(self) -> list[str]:
        return [str(message.get("title", "")) for message in self.received]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        inbox: Inbox = self.server.inbox  # type: ignore[attr-defined]
        inbox.requests.append(f"{self.command} {self.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if inbox.redirect_to is not None:
            status = 307
        elif self.command != "POST":
            status = 405
        elif inbox.fail_next > 0:
            inbox.fail_next -= 1
            status = 500
        else:
            inbox.received.append(json.loads(body))
            status = 200
        self.send_response(status)
        if inbox.redirect_to is not None:
            self.send_header("Location", inbox.redirect_to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any


class _Server(ThreadingHTTPServer):
    inbox: Inbox

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.inbox.connections += 1
        return True


class _Server6(_Server):
    address_family = socket.AF_INET6


@contextmanager
def running_inbox(host: str = "127.0.0.1") -> Iterator[Inbox]:
    server = (_Server6 if ":" in host else _Server)((host, 0), _Handler)
    inbox = Inbox(port=server.server_address[1], host=host)
    server.inbox = inbox
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        server.shutdown()
        thread.join()
        _count_unaccepted(server)
        server.server_close()


def _count_unaccepted(server: _Server) -> None:
    """Count the connections still waiting in the listen backlog: after the context, `reached`
    says whether anything connected at all, even a connection never served."""
    server.socket.setblocking(False)
    while True:
        try:
            connection, _ = server.socket.accept()
        except BlockingIOError:
            return
        connection.close()
        server.inbox.connections += 1
