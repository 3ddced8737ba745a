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


# The files that keep one worker busy for a minute or more (seconds of one worker in a full
# run on 2 cores, 3 workers: 215, 82, 72, 63, 60, 49): they start first, then every other
# file that starts processes, then the unit tests, which fill the workers' tails in small
# pieces. Longest first is what keeps the run near its total / workers; scripts/test passes
# --no-loadscope-reorder so that xdist keeps this order instead of sorting by test count.
_LONGEST_FIRST = (
    "relay/test_relay_load_faults.py",
    "scale/test_several_instances.py",
    "scale/test_faults.py",
    "web/test_admin_console.py",
    "relay/test_responses_socket.py",
    "relay/test_relay_limits_live.py",
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
    items.sort(key=lambda item: (_start_rank(item.path.as_posix()), not seen[str(item.path)]))


def _start_rank(path: str) -> int:
    return next(
        (rank for rank, name in enumerate(_LONGEST_FIRST) if path.endswith("tests/" + name)),
        len(_LONGEST_FIRST),
    )
