"""Compare our answers with new-api's, recorded as JSON under `shapes/`: every field the
recorded answer has, ours has too, with the same JSON type (any number for a number)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SHAPES = Path(__file__).parent / "shapes"


def recorded(name: str) -> Any:
    answer = json.loads((SHAPES / f"{name}.json").read_text())
    answer.pop("_source", None)
    answer.pop("_maps", None)
    return answer


def _maps(name: str) -> set[str]:
    """Paths (`.data.model_limits`) of objects that are maps: their keys are data, only the
    type of their values is compared."""
    return set(json.loads((SHAPES / f"{name}.json").read_text()).get("_maps", []))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def mismatches(
    ours: Any, theirs: Any, where: str = "", maps: frozenset[str] = frozenset()
) -> list[str]:
    """Where `ours` lacks a field of `theirs` or has another type there."""
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{where or '.'}: expected an object, got {_kind(ours)}"]
        if where in maps:
            sample = next(iter(theirs.values()))
            return [m for v in ours.values() for m in mismatches(v, sample, f"{where}[]")]
        found = []
        for name, value in theirs.items():
            if name not in ours:
                found.append(f"{where}.{name}: missing")
            else:
                found += mismatches(ours[name], value, f"{where}.{name}", maps)
        return found
    if isinstance(theirs, list):
        if not isinstance(ours, list):
            return [f"{where}: expected a list, got {_kind(ours)}"]
        if theirs and not ours:
            return [f"{where}: expected items to compare, got an empty list"]
        return mismatches(ours[0], theirs[0], f"{where}[0]", maps) if theirs else []
    if _kind(ours) != _kind(theirs):
        return [f"{where}: expected {_kind(theirs)}, got {_kind(ours)} ({ours!r})"]
    return []


def assert_shaped_like(ours: Any, name: str, *, envelope_message: bool = False) -> None:
    """`ours` has every field of the recorded answer `name`, with the same types. The
    envelope's `message` is `null` on success here (SPEC §4), `""` in new-api."""
    theirs = recorded(name)
    if isinstance(theirs, dict) and not envelope_message:
        theirs.pop("message", None)
    found = mismatches(ours, theirs, maps=frozenset(_maps(name)))
    assert not found, f"not shaped like new-api's {name}: {found}"
