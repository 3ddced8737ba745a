"""A receiver of Apprise `json://` notifications on 127.0.0.1, in a thread: what the alert
tests read instead of a real mail or chat service."""

from __future__ import annotations

import json
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
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0  # answer this many POSTs with a 500 first

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/{SECRET_PATH}"

    def titles(self) -> list[str]:
        return [str(message.get("title", "")) for message in self.received]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        inbox: Inbox = self.server.inbox  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if inbox.fail_next > 0:
            inbox.fail_next -= 1
            status = 500
        else:
            inbox.received.append(json.loads(body))
            status = 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def running_inbox() -> Iterator[Inbox]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    inbox = Inbox(port=server.server_address[1])
    server.inbox = inbox  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
