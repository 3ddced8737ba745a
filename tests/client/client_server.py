"""A real HTTP server on 127.0.0.1 that answers as each provider does: `FakeProvider`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from client_payloads import Answer, json_answer


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # lower-cased names


Route = Answer | Callable[[Seen], Answer]


class FakeProvider:
    """Routes by path; several answers for one path are served in turn, the last repeating."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[Seen] = []
        self._routes: dict[str, list[Route]] = {}
        self._lock = threading.Lock()

    def route(self, path: str, *answers: Route) -> None:
        self._routes[path] = list(answers)

    def count(self, path: str) -> int:
        return sum(1 for seen in self.requests if seen.path == path)

    def answer(self, seen: Seen) -> Answer:
        with self._lock:
            self.requests.append(seen)
            queue = self._routes.get(seen.path.split("?")[0])
            if not queue:
                return json_answer({"success": False, "message": "not found"}, 404)
            route = queue.pop(0) if len(queue) > 1 else queue[0]
        return route(seen) if callable(route) else route


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
        answer = self.server.provider.answer(seen)
        time.sleep(answer.delay)
        try:
            self._send(answer)
        except OSError:  # the client gave up first (timeout tests)
            self.close_connection = True

    def _send(self, answer: Answer) -> None:
        if answer.hang_up:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        data = answer.encoded()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data) + (100 if answer.cut_short else 0)))
        self.end_headers()
        self.wfile.write(data)
        if answer.cut_short:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider_factory: Callable[[str], FakeProvider]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.provider = provider_factory(f"http://127.0.0.1:{self.server_address[1]}")

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-answer is part of the tests
