"""Text fields that name or identify things (usernames, models, request ids): printable
Unicode only.

Control characters are refused: PostgreSQL cannot store NUL in text at all (a charge
carrying one failed its whole group-commit batch), and escape sequences or line breaks in
a name end up in logs and terminals. Unpaired surrogates (JSON allows `"\\ud800"`) cannot
be encoded as UTF-8, so no database can store them either.
"""

from __future__ import annotations

import re

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
