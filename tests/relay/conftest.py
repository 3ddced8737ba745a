"""The fake upstream of examples/fake_upstream.py, on a free port in a thread, for each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from relay_live import close_sdk_clients
from wire_support import load_fake_upstream


@pytest.fixture
def fake_upstream() -> Iterator[Any]:
    """A running fake upstream: `.base_url`, and `.upstream` (script, requests, cancellations)."""
    with load_fake_upstream().serve_in_thread() as running:
        yield running


@pytest.fixture(autouse=True)
def _sdk_clients_closed() -> Iterator[None]:
    """SDK clients made with `relay_live.sdk_client` are closed after each test."""
    yield
    close_sdk_clients()
