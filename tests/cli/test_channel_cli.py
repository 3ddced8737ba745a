"""`quotaledger channel ...` (SPEC §8): refused without a secret key, the upstream key in
no output and no database file in clear, and `channel test` against a local upstream that
speaks OpenAI's and Anthropic's wire formats."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result

from quotaledger.cli.main import cli
from support import free_port

SECRET = "a-test-secret-key-of-more-than-32-characters"
UPSTREAM_KEY = "sk-upstream-0123456789abcdefXYZW"


@pytest.fixture
def run(migrated_sqlite_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, secret: str | None = SECRET) -> Result:
        env = {"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url, "COLUMNS": "200",
               "QUOTALEDGER_SECRET_KEY": secret, "UPSTREAM_KEY": UPSTREAM_KEY}  # fmt: skip
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


def _add(run, name: str, base_url: str, *extra: str) -> Result:  # type: ignore[no-untyped-def]
    return run("channel", "add", name, "--base-url", base_url, "--models", "m,n",
               "--api-key-stdin", *extra, input=UPSTREAM_KEY + "\n")  # fmt: skip


def _listed(run) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return json.loads(run("channel", "list", "--json").stdout)  # type: ignore[no-any-return]


def test_without_a_secret_key_a_channel_is_refused_with_the_reason(run) -> None:  # type: ignore[no-untyped-def]
    result = _add(run, "main", "https://api.example.com/v1")
    refused = run("channel", "add", "main", "--base-url", "https://x/v1", "--models", "m",
                  "--api-key-env", "UPSTREAM_KEY", secret=None)  # fmt: skip

    assert result.exit_code == 0, result.output
    assert refused.exit_code == 2
    assert "QUOTALEDGER_SECRET_KEY is not set" in refused.output
    assert [c["name"] for c in _listed(run)] == ["main"]


def test_channel_add_warns_of_each_model_without_a_price(run) -> None:  # type: ignore[no-untyped-def]
    assert (
        run(
            "price", "set", "m", "--input-usd-per-mtok", "1", "--output-usd-per-mtok", "2"
        ).exit_code
        == 0
    )

    added = _add(run, "main", "https://api.example.com/v1")

    assert added.exit_code == 0
    assert "Warning: n has no price, so it is not offered" in added.stderr
    assert "quotaledger price set n " in added.stderr
    assert "Warning: m" not in added.stderr


def test_the_upstream_key_is_nowhere_in_clear(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    added = _add(run, "main", "https://api.example.com/v1", "--map", "m=m-2026")
    table = run("channel", "list")

    assert added.exit_code == 0, added.output
    assert "key …XYZW" in added.stdout
    assert "m→m-2026" in table.stdout and "…XYZW" in table.stdout
    for output in (added.output, table.output, json.dumps(_listed(run))):
        assert UPSTREAM_KEY not in output
    for file in tmp_path.iterdir():  # the database, its WAL and shared memory
        assert UPSTREAM_KEY.encode() not in file.read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--map", "m"), "expected MODEL=UPSTREAM-MODEL"),
        (("--map", "zz=up"), "does not serve: zz"),
        (("--weight", "0"), "weight"),
        (("--api-key-env", "UPSTREAM_KEY"), "--api-key-stdin or --api-key-env"),
    ],
)
def test_bad_channel_flags_are_refused(run, extra: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    result = _add(run, "main", "https://api.example.com/v1", *extra)

    assert result.exit_code == 2
    assert message in result.output
    assert _listed(run) == []


def test_an_unset_key_variable_is_a_usage_error(run) -> None:  # type: ignore[no-untyped-def]
    result = run("channel", "add", "c", "--base-url", "https://x/v1", "--models", "m",
                 "--api-key-env", "NO_SUCH_VARIABLE")  # fmt: skip

    assert result.exit_code == 2 and "NO_SUCH_VARIABLE is not set" in result.output


def test_channels_are_disabled_enabled_and_deleted(run) -> None:  # type: ignore[no-untyped-def]
    _add(run, "main", "https://api.example.com/v1")

    assert run("channel", "disable", "main").stdout == "Disabled channel main.\n"
    assert _listed(run)[0]["status"] == "disabled"
    run("channel", "enable", "main")
    assert _listed(run)[0]["status"] == "enabled"
    assert run("channel", "delete", "main").exit_code == 0
    assert _listed(run) == []
    assert run("channel", "delete", "main").exit_code == 1


# ------------------------------------------------------------------ channel test


class _Upstream(BaseHTTPRequestHandler):
    """Answers like OpenAI (/v1/chat/completions) or Anthropic (/v1/messages)."""

    seen: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        headers = {k.lower(): v for k, v in self.headers.items()}  # names are case-blind
        self.seen.append({"path": self.path, "headers": headers, "body": body})
        if self.status != 200:
            answer: dict[str, Any] = {"error": {"message": "Incorrect API key provided"}}
        elif self.path.endswith("/messages"):
            answer = {"type": "message", "content": [{"type": "text", "text": "p"}],
                      "usage": {"input_tokens": 8, "output_tokens": 1}}  # fmt: skip
        else:
            answer = {"object": "chat.completion", "choices": [{"message": {"content": "p"}}],
                      "usage": {"prompt_tokens": 8, "completion_tokens": 1}}  # fmt: skip
        payload = json.dumps(answer).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    _Upstream.seen.clear()
    _Upstream.status = 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_channel_test_sends_one_tiny_openai_request(run, upstream: str) -> None:  # type: ignore[no-untyped-def]
    _add(run, "main", upstream + "/v1", "--map", "m=m-2026")

    result = run("channel", "test", "main")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("channel main: HTTP 200 in ")
    assert "(m-2026)" in result.stdout
    [request] = _Upstream.seen
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert request["body"]["model"] == "m-2026" and request["body"]["max_tokens"] == 1


def test_channel_test_speaks_anthropic_to_an_anthropic_channel(run, upstream: str) -> None:  # type: ignore[no-untyped-def]
    _add(run, "claude", upstream, "--format", "anthropic")  # no path: /v1 assumed

    result = run("channel", "test", "claude", "--model", "n")

    assert result.exit_code == 0, result.output
    [request] = _Upstream.seen
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == UPSTREAM_KEY
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request["headers"]
    assert request["body"]["model"] == "n"


def test_channel_test_reports_an_upstream_refusal(run, upstream: str) -> None:  # type: ignore[no-untyped-def]
    _add(run, "main", upstream + "/v1")
    _Upstream.status = 401

    result = run("channel", "test", "main")

    assert result.exit_code == 1
    assert "HTTP 401" in result.output and "Incorrect API key provided" in result.output
    assert UPSTREAM_KEY not in result.output


def test_channel_test_of_an_unreachable_upstream_is_a_network_error(run) -> None:  # type: ignore[no-untyped-def]
    _add(run, "gone", f"http://127.0.0.1:{free_port()}/v1")

    result = run("channel", "test", "gone", "--timeout", "5")

    assert result.exit_code == 5
    assert "unreachable" in result.output and UPSTREAM_KEY not in result.output


def test_channel_edit_changes_only_what_it_is_given(run) -> None:  # type: ignore[no-untyped-def]
    _add(run, "main", "https://api.example.com/v1")

    edited = run("channel", "edit", "main", "--priority", "9", "--weight", "4", "--models", "m,o")
    [channel] = _listed(run)

    assert edited.exit_code == 0, edited.output
    assert (channel["priority"], channel["weight"], channel["models"]) == (9, 4, ["m", "o"])
    assert (
        channel["api_key_hint"] == "…XYZW" and channel["base_url"] == "https://api.example.com/v1"
    )
    assert UPSTREAM_KEY not in edited.output


def test_channel_edit_takes_a_new_key_and_a_new_name(run) -> None:  # type: ignore[no-untyped-def]
    _add(run, "main", "https://api.example.com/v1")

    edited = run("channel", "edit", "main", "--rename", "primary", "--api-key-stdin",
                 input="sk-replacement-key-0000ABCD\n")  # fmt: skip
    [channel] = _listed(run)

    assert edited.exit_code == 0, edited.output
    assert (channel["name"], channel["api_key_hint"]) == ("primary", "…ABCD")
    assert "sk-replacement-key-0000ABCD" not in edited.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [((), "give at least one setting"), (("--weight", "0"), "weight"),
     (("--map", "zz=upstream"), "does not serve")],
)  # fmt: skip
def test_channel_edit_refuses_bad_changes(run, extra: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    _add(run, "main", "https://api.example.com/v1")
    result = run("channel", "edit", "main", *extra)
    assert result.exit_code != 0 and message in result.output
    assert run("channel", "edit", "nowhere", "--weight", "2").exit_code != 0


def test_channel_commands_leave_entries_in_the_audit_trail(run, migrated_sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    from quotaledger.identity import audit_trail
    from quotaledger.store.database import Database

    _add(run, "main", "https://api.example.com/v1")
    run("channel", "edit", "main", "--weight", "2")
    run("channel", "disable", "main")

    database = Database(migrated_sqlite_url)
    try:
        entries, _ = audit_trail.trail_page(database, 1, 10)
    finally:
        database.dispose()
    assert [e["action"] for e in entries] == ["channel.disable", "channel.edit", "channel.add"]
    assert all(e["actor"].startswith("cli:") and e["address"] == "cli" for e in entries)
    assert entries[1]["detail"] == {"weight": 2}
    assert UPSTREAM_KEY not in str(entries)
