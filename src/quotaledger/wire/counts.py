"""Token counts as read from a provider's JSON usage report: trusted only when they are
non-negative integers, so a malformed report is told apart from an absent field."""

from __future__ import annotations

from typing import Any


def count(value: Any) -> int | None:
    """A token count from a provider's JSON: a non-negative int (not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def optional_count(value: Any) -> int | None:
    """Like `count`, but an absent field (None) is 0; a present but invalid one is None."""
    return 0 if value is None else count(value)
