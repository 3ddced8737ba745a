"""Helpers for the relay's wire tests: the example fake upstream, imported from examples/."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fake_upstream.py"


def load_fake_upstream() -> ModuleType:
    """Import examples/fake_upstream.py once, as the module `fake_upstream`."""
    if "fake_upstream" in sys.modules:
        return sys.modules["fake_upstream"]
    spec = importlib.util.spec_from_file_location("fake_upstream", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_upstream"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def relay_stream(tracker: Any, stream: bytes, *, chunk: int = 7, finish: bool = True) -> bytes:
    """What the client receives when `stream` passes through `tracker`, in small chunks."""
    from quotaledger.wire.sse import SSEParser

    parser = SSEParser()
    sent = b"".join(
        tracker.relay(event)
        for start in range(0, len(stream), chunk)
        for event in parser.feed(stream[start : start + chunk])
    )
    return sent + tracker.finish() if finish else sent


def client_events(sent: bytes) -> list[Any]:
    """The JSON payloads of the events a client received (`[DONE]` as the string)."""
    from quotaledger.wire.sse import SSEParser

    events = SSEParser().feed(sent)
    return [e.data if e.data == "[DONE]" else e.json() for e in events if e.has_data]


@contextlib.contextmanager
def serve_app(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on a free loopback port in a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
