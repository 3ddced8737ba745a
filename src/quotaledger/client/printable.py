"""Text a server sent, made safe to show on a terminal, in a log line or a plugin's status.

A relay's `message` (or group, or any field we print) is the server's text: it may carry
escape sequences that set the terminal's title, write the clipboard (OSC 52) or move the
cursor to overwrite what was printed, and line breaks that forge a second line. `printable`
keeps the words: escape sequences and control characters go, line breaks become spaces.
"""

from __future__ import annotations

import re
import unicodedata

_ESCAPE_SEQUENCE = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]                     # CSI: colours, cursor moves, erasing
    | \x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?  # OSC: window title, clipboard, links
    | \x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?      # DCS, SOS, PM, APC strings
    | \x1b[ -/]*[0-~]                           # any other escape
    | \x9b[0-?]*[ -/]*[@-~]                     # CSI in its one-byte C1 form
    | \x9d[^\x07\x1b\x9c]*(?:\x07|\x9c)?           # OSC in its C1 form
    """,
    re.VERBOSE,
)
_UNSEEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories that print nothing of their own: controls (C0, C1, DEL), formats (bidi
overrides that reorder what follows, zero-width characters), surrogates, private use,
unassigned, line and paragraph separators."""


def printable(text: str) -> str:
    """`text` on one line without escape sequences or control characters; runs of white space
    (line breaks included) become one space."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    kept = "".join(" " if ch.isspace() else ch for ch in text if _shown(ch))
    return " ".join(kept.split())


def _shown(character: str) -> bool:
    return character.isspace() or unicodedata.category(character) not in _UNSEEN
