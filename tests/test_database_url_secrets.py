"""A database URL's password never leaks: not in `serve`'s start-up line (a `?password=`
query string included), not in an error about a URL whose password holds an unencoded
`@`, not in a traceback about an unreadable URL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from quotaledger.settings import Settings, SettingsError, redact_database_url
from support import ADMIN_PASSWORD, free_port, run_cli

SECRETS = ("pw-one-secret", "pw-two-secret", "pw-three-secret")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:pw-one-secret@db.internal:5432/ledger", "bob:***@db.internal:5432"),
        ("postgresql://bob@db.internal/ledger?password=pw-two-secret", "?password=***"),
        (
            "postgresql://bob@db/ledger?sslmode=require&sslpassword=pw-three-secret",
            "sslmode=require&sslpassword=***",
        ),
        ("postgresql://bob:pw-one%40secret@db/ledger", "bob:***@db/ledger"),
    ],
)
def test_a_redacted_url_shows_where_but_no_password(url: str, shown: str) -> None:
    settings = Settings.from_env({}, database_url=url)

    redacted = redact_database_url(settings.database_url)

    assert shown in redacted
    assert not any(secret in redacted for secret in SECRETS)
    assert "pw-one@secret" not in redacted


def test_a_password_with_an_unencoded_at_sign_is_refused_without_repeating_it() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"QUOTALEDGER_DATABASE_URL": "postgresql://bob:pw-one@secret@db/x"})

    assert "%40" in str(refused.value)
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:pw-one@secret@127.0.0.1:5432/nodb",  # would print host 'secret@...'
        "postgresql://bob:pw-one-secret@127.0.0.1:notaport/nodb",  # was a traceback
        "postgresql://bob:pw-one-secret@[::1/nodb",
    ],
)
def test_the_admin_commands_say_what_is_wrong_with_a_url_without_its_password(url: str) -> None:
    result = run_cli("db", "upgrade", "--database-url", url)

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: QUOTALEDGER_DATABASE_URL: ")
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stdout + result.stderr


@pytest.mark.postgres
@pytest.mark.slow
def test_serve_never_prints_the_password_of_its_database_url(
    postgres_server_url: str, tmp_path: Path
) -> None:
    # The test server trusts loopback connections: any password is accepted and ignored.
    host_and_db = postgres_server_url.split("@", 1)[1]
    url = f"postgresql://postgres:pw-one-secret@{host_and_db}?password=pw-two-secret"
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "quotaledger", "serve", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={
                **_environ(),
                "QUOTALEDGER_DATABASE_URL": url,
                "QUOTALEDGER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "QUOTALEDGER_LOG_LEVEL": "DEBUG",
            },
        )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
    output = log.read_text()

    assert f"(database: postgresql+psycopg://postgres:***@{host_and_db}?password=***)" in output
    assert not any(secret in output for secret in SECRETS)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"server did not start:\n{log.read_text()}")
