"""Fixtures for every test; they live in support.py, which test modules also import from."""

from support import (  # noqa: F401 - pytest finds fixtures by name here
    _postgres_baseline,
    _prepared_sqlite,
    admin_token,
    client,
    database,
    database_url,
    live_server,
    make_user,
    migrated_sqlite_url,
    postgres_server_url,
    settings,
    sqlite_url,
)

# `scripts/test --quick` runs what is neither marked slow, browser, postgres or redis nor
# `live`: a module that starts processes (a server, the CLI, a fake upstream) is live.
_STARTS_PROCESSES = (
    "start_server(",
    "relay_server(",
    "live_server",
    "serve_in_thread",
    "run_cli(",
    "subprocess",
)


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "live: starts processes (set by tests/conftest.py)")


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    import pytest

    seen: dict[str, bool] = {}
    for item in items:
        path = str(item.path)
        if path not in seen:
            text = item.path.read_text(errors="replace")
            seen[path] = any(marker in text for marker in _STARTS_PROCESSES)
        if seen[path]:
            item.add_marker(pytest.mark.live)
