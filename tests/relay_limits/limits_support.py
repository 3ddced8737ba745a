"""Helpers of the limits, health and balances tests."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def command_calls(url: str) -> dict[str, int]:
    """`INFO commandstats` of the server at `url`: calls per command."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


class ScriptedUpstream:
    """An HTTP server on loopback answering each request with the next scripted status
    (a status, a (status, body) pair, or "hang": no answer until the client gives up); the
    last entry repeats."""

    def __init__(self, *script: object) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script = list(script)
        self.requests = 0
        self.release = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                step = upstream._next()
                if step == "hang":
                    upstream.release.wait(30)
                    return
                status, body = step if isinstance(step, tuple) else (step, "{}")
                data = str(body).encode()
                self.send_response(int(status))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next(self) -> object:
        self.requests += 1
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class CommandLog:
    """The commands clients send to the Redis at `url` (MONITOR), scripts' own commands
    left out: what a test counts as round trips. Use as a context manager around the
    calls to count; `commands` holds them afterwards."""

    MARK = "commandlog-end-mark"

    def __init__(self, url: str) -> None:
        import threading

        import redis

        self.url = url
        self.commands: list[str] = []
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        for seen in self._monitor.listen():
            command = str(seen.get("command", ""))
            if self.MARK in command:
                return
            # HELLO: the marker's own connection opening
            if seen.get("client_type") != "lua" and not command.startswith("HELLO"):
                self.commands.append(command.split(" ", 1)[0].upper())

    def __enter__(self) -> CommandLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import redis

        marker = redis.Redis.from_url(self.url)
        marker.echo(self.MARK)
        marker.close()
        self._thread.join(10)
        self._monitor.__exit__(None, None, None)
        self._client.close()
