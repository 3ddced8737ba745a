"""Monitor fixtures; the helpers they build are in monitor_support.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor_support import (
    MEMORY,
    Clock,
    LoopbackServer,
    Relay,
    RelayHandler,
    Rig,
    Webhook,
    WebhookHandler,
    account_toml,
    defaults_toml,
    write_config,
)


@pytest.fixture
def memory() -> Iterator[list[dict[str, str]]]:
    """Messages sent to `memory://` URLs during the test."""
    MEMORY.clear()
    yield MEMORY
    MEMORY.clear()


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A new-api style relay on 127.0.0.1 holding $50; tests change its balance."""
    state = Relay()
    server = LoopbackServer(RelayHandler, state)
    state.base_url = f"http://127.0.0.1:{server.port}"
    yield state
    server.close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A receiver of `json://` notifications on 127.0.0.1."""
    state = Webhook()
    server = LoopbackServer(WebhookHandler, state)
    state.port = server.port
    yield state
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rig_factory(tmp_path: Path, clock: Clock) -> AsyncIterator[Any]:
    """Builds a `Rig` from config text; every rig shares the test's state file and clock."""
    rigs: list[Rig] = []

    async def make(config_text: str) -> Rig:
        path = write_config(tmp_path / f"watch{len(rigs)}.toml", config_text)
        rig = Rig(path, tmp_path / "state.sqlite3", clock)
        await rig.start()
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.stop()


@pytest.fixture
async def rig(rig_factory: Any, relay: Relay, webhook: Webhook, memory: list[Any]) -> Rig:
    """One account `prod` (warn $20, critical $5) notified by webhook and memory plugin."""
    made: Rig = await rig_factory(defaults_toml(webhook.url, "memory://") + account_toml(relay))
    return made
