"""The real Gemini CLI through the relay (SPEC §11.1), installed from npm (`agents.py`): a
non-interactive turn that calls its shell tool natively on a `gemini` channel — the tool
runs, its result goes back, the model answers — and every request of the turn is charged
exactly what its tokens cost. Offline: the channel is the local fake upstream, speaking
Google's wire format."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Turn, install_agents, run_agent
from relay_live import (
    ANSWER,
    FORMAT_MODELS,
    Customer,
    Relay,
    balance,
    consistent,
    customer,
    relay_server,
)
from relay_live import log_rows as rows_of

pytestmark = pytest.mark.slow

MARK = "quotaledger-tool-ran"  # what the tool prints; its result must reach the model
MODEL = FORMAT_MODELS["gemini"]
STREAM = f"/v1beta/models/{MODEL}:streamGenerateContent"


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return install_agents()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    # The access log counts the CLI's requests (a refusal it retried would show twice).
    yield from relay_server(tmp_path_factory, formats=True, env={"QUOTALEDGER_ACCESS_LOG": "1"})


def _cost(row: Any) -> int:
    """1 USD in, 2 USD out per million tokens (no cache tokens in this turn)."""
    assert row["cached_tokens"] == 0
    return -(-(row["prompt_tokens"] + 2 * row["completion_tokens"]) * 500_000 // 1_000_000)


def _charged_exactly(relay: Relay, who: Customer, start: int, channel: str) -> list[Any]:
    rows = rows_of(relay, who)
    assert rows and all(r["status"] == 200 and r["usage_source"] == "upstream" for r in rows)
    assert {(r["client_format"], r["channel_format"]) for r in rows} == {("gemini", channel)}
    for row in rows:
        assert row["quota"] == _cost(row)
    assert start - balance(relay, who).quota == sum(r["quota"] for r in rows)
    consistent(relay)
    return rows


# Natively, and converted on an Anthropic channel (Gemini CLI on Claude): (channel format,
# the model only that channel serves, the upstream path it is called on).
CHANNELS = [
    pytest.param("gemini", MODEL, STREAM, id="gemini"),
    pytest.param("anthropic", FORMAT_MODELS["anthropic"], "/v1/messages", id="anthropic"),
]


@pytest.mark.parametrize(("channel", "model", "path"), CHANNELS)
def test_gemini_cli_runs_a_shell_tool_turn(
    relay: Relay, bin_dir: Path, tmp_path: Path, channel: str, model: str, path: str
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to(path))
    command = {"command": f"echo {MARK}", "description": "Print a word"}
    relay.upstream.script(
        path=path, tool_call=True, tool_name="run_shell_command",
        tool_arguments=json.dumps(command),
    )  # fmt: skip
    turn = _gemini(bin_dir, relay, who, tmp_path, "Run the echo.", model)
    assert turn.exit_code == 0, turn.stdout[-2000:] + turn.stderr[-2000:]
    result = json.loads(turn.stdout)
    assert result["response"] == ANSWER, result
    bodies = [r.body for r in relay.upstream.requests_to(path)[seen:]]
    assert len(bodies) >= 2, "the tool call and the turn after it"
    assert MARK.encode() in bodies[-1]  # the tool ran; its output went back
    rows = _charged_exactly(relay, who, start, channel)
    assert len(rows) == len(bodies)


def test_gemini_cli_shows_out_of_money_at_once(relay: Relay, bin_dir: Path, tmp_path: Path) -> None:
    """SPEC §8b: the relay's 402, shown with its message, never retried."""
    who = customer(relay, quota=100)
    seen = len(relay.upstream.requests)
    asked = relay.server.log().count(STREAM)
    turn = _gemini(bin_dir, relay, who, tmp_path, "Say hello.")
    assert turn.exit_code != 0
    assert "Insufficient quota" in turn.stdout + turn.stderr
    time.sleep(0.5)  # the engine writes its access line after the answer
    assert relay.server.log().count(STREAM) - asked == 1  # asked once: not retried
    assert relay.upstream.requests[seen:] == [] and rows_of(relay, who) == []
    assert balance(relay, who).quota == 100


def _gemini(
    bin_dir: Path, relay: Relay, who: Customer, home: Path, prompt: str, model: str = MODEL
) -> Turn:
    """One headless Gemini CLI turn by `who` (tools approved: `--yolo`)."""
    _settings(home)
    return run_agent(
        [str(bin_dir / "gemini"), "-p", prompt, "--model", model,
         "--output-format", "json", "--yolo", "--skip-trust"],
        {
            "GOOGLE_GEMINI_BASE_URL": relay.server.base_url,
            "GEMINI_API_KEY": who.key,
            "GEMINI_TELEMETRY_ENABLED": "false",
            "GEMINI_CLI_NO_RELAUNCH": "true",
        },
        home,
    )  # fmt: skip


def _settings(home: Path) -> None:
    """The README's Gemini CLI recipe: an API key (`gemini-api-key`), the relay as
    `GOOGLE_GEMINI_BASE_URL`. Chosen in the settings: with a base URL set and no choice made,
    Gemini CLI 0.61 picks its `gateway` type, which its headless mode then refuses."""
    folder = home / ".gemini"
    folder.mkdir()
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
