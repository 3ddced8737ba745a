"""The real agent CLIs through the relay (SPEC §8a, §11), installed from npm (`agents.py`):
each finishes a non-interactive turn that calls one of its own tools — the tool runs, its
result goes back, the model answers — and every request of the turn is charged exactly
what its tokens cost. Offline: the channels are the local fake upstream, speaking each
provider's wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agents import install_agents, run_agent
from relay_live import (
    ANSWER,
    CLAUDE,
    FORMAT_MODELS,
    MODEL,
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


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return install_agents()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    yield from relay_server(tmp_path_factory, formats=True)


def _cost(row: Any, in_per_mtok: int, out_per_mtok: int) -> int:
    """The quota a row's tokens cost (no cache tokens in these turns): ceil((in x p_in +
    out x p_out) / 1e6 x 500,000), in integers."""
    assert row["cached_tokens"] == row["cache_write_tokens"] == row["cache_write_1h_tokens"] == 0
    micro = row["prompt_tokens"] * in_per_mtok + row["completion_tokens"] * out_per_mtok
    return -(-micro * 500_000 // 1_000_000)


def _charged_exactly(relay: Relay, who: Customer, start: int, prices: tuple[int, int]) -> None:
    rows = rows_of(relay, who)
    assert rows and all(r["status"] == 200 and r["usage_source"] == "upstream" for r in rows)
    for row in rows:
        assert row["quota"] == _cost(row, *prices)
    assert start - balance(relay, who).quota == sum(r["quota"] for r in rows)
    consistent(relay)


def _tool_result_went_back(relay: Relay, path: str, seen: int) -> None:
    bodies = [r.body for r in relay.upstream.requests_to(path)[seen:]]
    assert len(bodies) >= 2, "the tool call and the turn after it"
    assert MARK.encode() in bodies[-1]


CLAUDE_CHANNELS = [
    pytest.param(CLAUDE, "/v1/messages", (3, 15), id="anthropic"),
    pytest.param(FORMAT_MODELS["openai-chat"], "/v1/chat/completions", (1, 2), id="openai-chat"),
]


@pytest.mark.parametrize(("model", "path", "prices"), CLAUDE_CHANNELS)
def test_claude_code_runs_a_tool_turn(
    relay: Relay, bin_dir: Path, tmp_path: Path, model: str, path: str, prices: tuple[int, int]
) -> None:
    """Natively, and on an OpenAI-compatible chat channel (DeepSeek, Kimi, GLM...): the
    Messages request converted to Chat Completions and the answer back."""
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to(path))
    command = json.dumps({"command": f"echo {MARK}", "description": "Print a word"})
    relay.upstream.script(tool_call=True, tool_name="Bash", tool_arguments=command, times=1)
    turn = run_agent(
        [str(bin_dir / "claude"), "-p", "Run the echo.", "--model", model,
         "--output-format", "json", "--allowedTools", "Bash(echo:*)"],
        {
            "ANTHROPIC_BASE_URL": relay.server.base_url,
            "ANTHROPIC_API_KEY": who.key,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        },
        tmp_path,
    )  # fmt: skip
    assert turn.exit_code == 0, turn.stdout[-2000:] + turn.stderr[-2000:]
    result = json.loads(turn.stdout)
    assert (result["is_error"], result["result"], result["num_turns"]) == (False, ANSWER, 2)
    _tool_result_went_back(relay, path, seen)
    _charged_exactly(relay, who, start, prices)
    assert {r["session_id"] for r in rows_of(relay, who)} == {result["session_id"]}


CODEX_CHANNELS = [
    pytest.param(MODEL, "/v1/responses", (2, 8), id="openai"),
    pytest.param(FORMAT_MODELS["openai-chat"], "/v1/chat/completions", (1, 2), id="openai-chat"),
]


@pytest.mark.parametrize(("model", "path", "prices"), CODEX_CHANNELS)
def test_codex_runs_a_tool_turn(
    relay: Relay, bin_dir: Path, tmp_path: Path, model: str, path: str, prices: tuple[int, int]
) -> None:
    """Natively, and on a chat-only channel: the Responses request converted to Chat
    Completions and the stream back into Responses events."""
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to(path))
    relay.upstream.script(
        tool_call=True, tool_name="exec_command", times=1,
        tool_arguments=json.dumps({"cmd": f"echo {MARK}"}),
    )  # fmt: skip
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(_codex_config(relay.v1, model))
    turn = run_agent(
        [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", "Run the echo."],
        {"CODEX_HOME": str(home), "QUOTALEDGER_KEY": who.key},
        tmp_path,
    )
    assert turn.exit_code == 0, turn.stdout[-2000:] + turn.stderr[-2000:]
    assert ANSWER in turn.stdout
    _tool_result_went_back(relay, path, seen)
    _charged_exactly(relay, who, start, prices)


def _codex_config(base_url: str, model: str = MODEL) -> str:
    """The README's Codex recipe: a custom provider on the Responses API (current Codex
    ignores OPENAI_BASE_URL), here without `supports_websockets`: over HTTP (the socket has
    its own tests, test_responses_socket.py)."""
    return (
        f'model = "{model}"\n'
        'model_provider = "quotaledger"\n\n'
        "[model_providers.quotaledger]\n"
        'name = "quotaledger"\n'
        f'base_url = "{base_url}"\n'
        'env_key = "QUOTALEDGER_KEY"\n'
        'wire_api = "responses"\n'
    )


CLAUDE_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


def _claude(bin_dir: Path, relay: Relay, who: Customer, prompt: str, cwd: Path) -> Any:
    cwd.mkdir(exist_ok=True)
    return run_agent(
        [str(bin_dir / "claude"), "-p", prompt, "--model", CLAUDE, "--output-format", "json"],
        {
            "ANTHROPIC_BASE_URL": relay.server.base_url,
            "ANTHROPIC_API_KEY": who.key,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": CLAUDE,
            **CLAUDE_ENV,
        },
        cwd,
    )


def test_claude_code_finishes_a_turn_on_five_cents(
    relay: Relay, bin_dir: Path, tmp_path: Path
) -> None:
    """SPEC §8b: Claude Code asks for max_tokens 32000 and sends a prompt of some 35,000
    tokens, most of it marked for Anthropic's prompt cache, which the upstream holds once
    anyone's session has sent it. A $0.05 key (25,000 quota) at Sonnet prices still finishes
    a turn: the warm prefix is reserved at the cache-read price, the cap lowered to what the
    balance covers, and the turn charged what the upstream reported, never below zero."""
    relay.upstream.reset()
    try:
        cached = {"input_tokens": 400, "path": "/v1/messages", "times": 4}
        relay.upstream.script(cache_write_5m=30_000, **cached)  # someone's session, first
        warm_up = _claude(bin_dir, relay, customer(relay), "Say hello.", tmp_path / "a")
        assert warm_up.exit_code == 0, warm_up.stdout[-2000:] + warm_up.stderr[-2000:]
        relay.upstream.reset()
        relay.upstream.script(cache_read=30_000, **cached)
        who = customer(relay, quota=25_000)
        turn = _claude(bin_dir, relay, who, "Say hello.", tmp_path / "b")
        assert turn.exit_code == 0, turn.stdout[-2000:] + turn.stderr[-2000:]
        assert json.loads(turn.stdout)["result"] == ANSWER
        sent = [json.loads(r.body) for r in relay.upstream.requests_to("/v1/messages")]
        assert sent and all(body["max_tokens"] < 32_000 for body in sent)  # lowered
        rows = rows_of(relay, who)
        assert rows and all(r["status"] == 200 and r["cached_tokens"] == 30_000 for r in rows)
        # 400 x 3 + 30,000 x 0.3 + output x 15 USD per million tokens, x 0.5 quota per μUSD
        for row in rows:
            micro = 400 * 3 + 30_000 * 3 // 10 + row["completion_tokens"] * 15
            assert row["quota"] == -(-micro * 500_000 // 1_000_000)
        assert 25_000 - balance(relay, who).quota == sum(r["quota"] for r in rows)
        consistent(relay)
    finally:
        relay.upstream.reset()


def _refusals(relay: Relay, client_format: str) -> float:
    """How many requests of `client_format` the relay refused for money (its /metrics)."""
    wanted = f'quotaledger_relay_out_of_money_total{{format="{client_format}"}} '
    text = httpx.get(relay.server.base_url + "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


def test_claude_code_on_an_empty_key_stops_at_once_with_the_relays_message(
    relay: Relay, bin_dir: Path, tmp_path: Path
) -> None:
    who = customer(relay, quota=0)
    before = _refusals(relay, "messages")
    turn = _claude(bin_dir, relay, who, "Say hello.", tmp_path)
    assert turn.exit_code != 0 or json.loads(turn.stdout)["is_error"] is True
    assert "Insufficient quota" in turn.stdout + turn.stderr, turn.stdout[:1500]
    # At once: Claude Code retries what it may retry up to 10 times per call.
    assert _refusals(relay, "messages") - before == 1
    assert rows_of(relay, who) == []  # nothing reserved, nothing charged


def test_codex_on_an_empty_key_stops_at_once_with_the_relays_message(
    relay: Relay, bin_dir: Path, tmp_path: Path
) -> None:
    who = customer(relay, quota=0)
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(_codex_config(relay.v1))
    before = _refusals(relay, "responses")
    turn = run_agent(
        [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", "Say hello."],
        {"CODEX_HOME": str(home), "QUOTALEDGER_KEY": who.key},
        tmp_path,
    )
    output = turn.stdout + turn.stderr
    assert turn.exit_code != 0, output[-2000:]
    assert "Insufficient quota" in output
    assert "Reconnecting" not in output
    assert _refusals(relay, "responses") - before == 1
