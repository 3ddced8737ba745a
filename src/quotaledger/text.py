"""Text fields that name or identify things (usernames, models, request ids): printable
Unicode only.

Control characters are refused: PostgreSQL cannot store NUL in text at all (a charge
carrying one failed its whole group-commit batch), and escape sequences or line breaks in
a name end up in logs and terminals. Unpaired surrogates (JSON allows `"\\ud800"`) cannot
be encoded as UTF-8, so no database can store them either.

Names stored before that rule (or by another door) are shown with `escaped`: what a
terminal would act on appears as its escape, so a name cannot clear or rewrite the screen.
"""

from __future__ import annotations

import re
import unicodedata

from quotaledger.errors import InvalidInput

# C0 controls, DEL, C1 controls, and the surrogate range.
_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_text(field: str, value: str) -> str:
    """`value` if it holds no control character or unpaired surrogate; else
    `InvalidInput` naming `field`."""
    found = _REFUSED.search(value)
    if found is not None:
        kind = "an unpaired surrogate" if found.group() >= "\ud800" else "a control character"
        raise InvalidInput(field, f"must not contain {kind} (found U+{ord(found.group()):04X})")
    return value


# What a terminal acts on or does not show: controls (C0, DEL, C1), formats (bidi overrides
# that reorder what follows, zero-width characters), surrogates, private use, unassigned,
# line and paragraph separators.
_UNSHOWN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_PLAIN = re.compile(r"[ -~]*")  # printable ASCII: the usual name, answered at once


def escaped(value: str) -> str:
    """`value` for a terminal: every character of `_UNSHOWN` written as its Python escape
    (ESC as `\\x1b`, a carriage return as `\\r`, U+202E as `\\u202e`), the rest as it is."""
    if _PLAIN.fullmatch(value):
        return value
    return "".join(ascii(ch)[1:-1] if unicodedata.category(ch) in _UNSHOWN else ch for ch in value)
