"""One hostile relay in `watch.toml` must not take the watcher down for every account: an
answer that never ends or inflates to gigabytes is a failed poll of that account (UNKNOWN
after `unknown_after` of them), read no further than 1 MiB, in bounded memory."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from monitor_support import TOKEN, Relay, account_toml, defaults_toml

from hostile_server import Answer, HostileServer, bomb, endless, run_measured
from quotaledger.cli.main import cli

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


def refusing_with(message: str) -> Answer:
    def answer(connection: socket.socket, stopped: threading.Event) -> None:
        body = json.dumps({"success": False, "message": message}).encode()
        head = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        connection.sendall(head.encode() + body)

    return answer


def test_a_relays_message_is_printed_and_kept_without_control_characters(
    tmp_path: Path,
) -> None:
    server = HostileServer(refusing_with("bad \x1b]0;pwned\x07token\r\nprod: OK [red]fine\x1b[2J"))
    config = tmp_path / "watch.toml"
    config.write_text(
        defaults_toml() + account_toml(SimpleNamespace(base_url=server.url))  # type: ignore[arg-type]
    )
    state = ["--config", str(config), "--state", str(tmp_path / "state.sqlite3")]
    try:
        watched = CliRunner().invoke(cli, ["watch", "--once", *state], env={"PROD_TOKEN": TOKEN})
        history = CliRunner().invoke(cli, ["history", "prod", *state], env={"COLUMNS": "300"})
    finally:
        server.close()

    assert watched.exit_code == 0, watched.output
    assert watched.output.count("\n") == 1 and "\x1b" not in watched.output
    assert "(HTTP 401: bad token prod: OK [red]fine)" in watched.output
    assert history.exit_code == 0, history.output
    assert "\x1b" not in history.output and "\r" not in history.output
    assert "[red]fine" in history.output  # shown as text, not taken as markup
