"""Helpers for the relay's wire tests: the example fake upstream, imported from examples/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fake_upstream.py"


def load_fake_upstream() -> ModuleType:
    """Import examples/fake_upstream.py once, as the module `fake_upstream`."""
    if "fake_upstream" in sys.modules:
        return sys.modules["fake_upstream"]
    spec = importlib.util.spec_from_file_location("fake_upstream", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_upstream"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
