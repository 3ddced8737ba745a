"""`run(main)`: the watcher's event loop.

uvloop where it is installed (it comes with the server's `uvicorn[standard]`, on Linux and
macOS): its sockets and callbacks cost the watcher's round over 1,000 accounts about a
tenth less CPU than asyncio's own loop (`benchmarks/README.md`). asyncio's loop elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or a trimmed install
        return asyncio.run(main)
    return uvloop.run(main)
