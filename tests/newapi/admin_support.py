"""Helpers for the admin API tests: the app with a secret key (channel keys are stored
encrypted), an admin logged in by session or by token, and the example fake upstream."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from starlette.testclient import TestClient

from quotaledger.secret import Secret
from quotaledger.server.app import create_app
from quotaledger.settings import Settings
from quotaledger.store.database import Database

SECRET_KEY = "admin-api-tests-secret-key-of-enough-length"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fake_upstream.py"


@contextmanager
def admin_app(settings: Settings, database: Database) -> Iterator[TestClient]:
    configured = settings.with_overrides(secret_key=Secret(SECRET_KEY))
    with TestClient(create_app(configured, database), base_url="http://testserver") as client:
        yield client


def _fake_upstream_module() -> ModuleType:
    if "fake_upstream" in sys.modules:
        return sys.modules["fake_upstream"]
    spec = importlib.util.spec_from_file_location("fake_upstream", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_upstream"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@contextmanager
def fake_upstream() -> Iterator[Any]:
    """The example fake provider on a free loopback port: `.base_url`, `.upstream`."""
    with _fake_upstream_module().serve_in_thread() as running:
        yield running


def channel_body(
    base_url: str, name: str = "main", key: str = "sk-upstream-secret-0042", **extra: Any
) -> dict[str, Any]:
    """A new-api channel body (type 1, OpenAI) on `base_url`."""
    return {
        "type": 1,
        "name": name,
        "key": key,
        "base_url": base_url,
        "models": "gpt-test,gpt-other",
        "priority": 0,
        "weight": 1,
        **extra,
    }
