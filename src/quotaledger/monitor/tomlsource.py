"""A TOML file and the lines its keys sit on, so that config errors can name file:line.

`tomllib` reports line numbers only for syntax errors, so a key's line is found by scanning
the text for `key =` inside the right table (`[defaults]`, or the n-th `[[account]]`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

_HEADER = re.compile(r"^\s*(\[\[?)\s*([\w.\"'-]+)\s*\]\]?")


class ConfigError(ValueError):
    """The config file cannot be used; `str()` is `file:line: where: reason`."""

    def __init__(self, path: Path, line: int | None, where: str, reason: str) -> None:
        self.path, self.line, self.where, self.reason = path, line, where, reason
        location = f"{path}:{line}" if line else str(path)
        super().__init__(f"{location}: {where}: {reason}" if where else f"{location}: {reason}")


@dataclass(frozen=True)
class Section:
    """Where a table sits: `table` is `""` (top level), `"defaults"`, or `"account"` with an
    `index` among the `[[account]]` tables; `label` is how messages name it."""

    table: str
    index: int = 0
    label: str = ""


class TomlSource:
    """The parsed data of one TOML file, plus the text to find keys' lines in."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        try:
            # Decimal, not float: thresholds are money.
            self.data: dict[str, Any] = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            line = int(match.group(1)) if match else None
            raise ConfigError(path, line, "", f"invalid TOML: {exc}") from None

    @classmethod
    def read(cls, path: Path) -> TomlSource:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(path, None, "", f"cannot read the file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(path, None, "", "the file is not UTF-8 text") from None
        return cls(path, text)

    def error(self, section: Section, key: str | None, reason: str, hint: str = "") -> ConfigError:
        """A `ConfigError` pointing at `key` in `section` (or at the line holding `hint`)."""
        where = f"{section.label} {key}" if key else section.label
        return ConfigError(self.path, self.locate(section, key, hint), where.strip(), reason)

    def locate(self, section: Section, key: str | None, hint: str = "") -> int | None:
        """The 1-based line of `key` (or of the text `hint`) in `section`, else its header."""
        start, end = self._span(section)
        if start is None:
            return None
        for number in range(start, end):
            line = self.lines[number]
            if hint and hint in line:
                return number + 1
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
        for number in range(start, end):
            if pattern and pattern.match(self.lines[number]):
                return number + 1
        return start if section.table else None

    def _span(self, section: Section) -> tuple[int | None, int]:
        """Line indexes [start, end) of the section's body; start is None if it is absent."""
        start: int | None = 0 if not section.table else None
        seen = 0
        for number, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if not match:
                continue
            if start is not None:
                return start, number
            name = match.group(2).strip("\"'")
            if name == section.table:
                if match.group(1) == "[" or seen == section.index:
                    start = number + 1
                seen += 1
        return start, len(self.lines)
