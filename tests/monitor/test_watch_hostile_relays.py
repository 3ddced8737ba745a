"""One hostile relay in `watch.toml` must not take the watcher down for every account: an
answer that never ends or inflates to gigabytes is a failed poll of that account (UNKNOWN
after `unknown_after` of them), read no further than 1 MiB, in bounded memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from monitor_support import TOKEN, Relay, account_toml, defaults_toml

from hostile_server import Answer, HostileServer, bomb, endless, run_measured

MEMORY_BOUND_MIB = 200


@pytest.fixture(params=[bomb(), endless], ids=["bomb", "endless"])
def hostile(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    answer: Answer = request.param
    server = HostileServer(answer)
    yield server
    server.close()


@pytest.mark.slow
def test_watch_once_survives_a_hostile_relay_and_polls_the_others(
    tmp_path: Path, relay: Relay, hostile: HostileServer
) -> None:
    config = tmp_path / "watch.toml"
    config.write_text(
        defaults_toml()
        + account_toml(SimpleNamespace(base_url=hostile.url), name="hostile")  # type: ignore[arg-type]
        + account_toml(relay, name="prod")
    )
    env = {**os.environ, "PROD_TOKEN": TOKEN}
    state = tmp_path / "state.sqlite3"

    result = run_measured(["watch", "--once", "--config", str(config), "--state", str(state)], env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("hostile: PENDING, poll failed: 127.0.0.1:")
    assert "larger than 1 MiB" in lines[0]
    assert lines[1] == "prod: OK, $50.00 left (25,000,000 quota)"
    assert result.peak_rss_mib < MEMORY_BOUND_MIB, result.peak_rss_mib
