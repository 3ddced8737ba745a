"""One `watch --once` cycle through the monitor's library API (docs/monitor.md), timing its
phases: imports, config (with the Apprise URL check), clients, and the poll round itself
(polls, decisions, history, notifications). Prints one JSON line.

    python benchmarks/watch_cycle.py watch.toml state.sqlite3
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def main(config_path: Path, state_path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    from quotaledger.monitor.config import load_config
    from quotaledger.monitor.history import History
    from quotaledger.monitor.notify import Notifier, check_url
    from quotaledger.monitor.tokens import resolve_tokens
    from quotaledger.monitor.watcher import Watcher

    imported = time.perf_counter()
    config = load_config(config_path, check_url=check_url)
    tokens = resolve_tokens(config)
    configured = time.perf_counter()
    logging.basicConfig(level=logging.WARNING)

    async def cycle() -> dict[str, Any]:
        with History(state_path) as history:
            watcher = Watcher(config, tokens, history, Notifier())
            async with watcher:
                ready = time.perf_counter()
                results = await watcher.poll_round()
                done = time.perf_counter()
            closed = time.perf_counter()
        return {
            "clients_s": ready - configured,
            "cycle_s": done - ready,
            "close_s": closed - done,
            "setup_s": ready - start,
            "polls_ok": sum(1 for r in results if r.outcome.poll.ok),
            "alerts": sum(1 for r in results if r.alert is not None),
            "delivered": sum(1 for r in results if r.delivered),
        }

    from quotaledger.monitor.event_loop import run

    measured = run(cycle())  # the loop `quotaledger watch` runs on
    return {"imports_s": imported - start, "config_s": configured - imported, **measured}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))), flush=True)
