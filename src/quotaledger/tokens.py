"""System tokens (AccessTokens), and the same format under another prefix for API keys
(`sk-ql-`, `keys.py`).

Format: ``ql_`` + 32 random base62 characters (190 bits) + 6 base62 characters of the CRC32
of the random part. The checksum lets a client or a secret scanner tell a mistyped or
truncated token without asking the server, and lets the server refuse one without a
database read. At rest only the SHA-256 hex digest is kept, with a short hint (last 4
characters) for display: the token has 190 bits of entropy, so a fast hash is enough and
keeps the balance query cheap (a slow password hash on this path would be a DoS lever).
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

PREFIX = "ql_"
_ALPHABET = string.digits + string.ascii_letters  # base62
_RANDOM_LENGTH = 32
_CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + _RANDOM_LENGTH + _CHECKSUM_LENGTH


# Base62 two digits at a time: every balance query checks a checksum, and this halves it.
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]


def _checksum(body: str) -> str:
    """6 base62 digits of the CRC32 (which is below 62**6)."""
    number = zlib.crc32(body.encode("ascii"))
    high, rest = divmod(number, 62**4)
    middle, low = divmod(rest, 62**2)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def generate_token(prefix: str = PREFIX) -> str:
    """A new random token: `prefix` (default `ql_`), the random body, its checksum."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    return prefix + body + _checksum(body)


def is_well_formed(token: str, prefix: str = PREFIX) -> bool:
    """True if `token` has `prefix`, our length, alphabet and a matching checksum."""
    if len(token) != len(prefix) + _RANDOM_LENGTH + _CHECKSUM_LENGTH:
        return False
    if not token.startswith(prefix):
        return False
    rest = token[len(prefix) :]
    # ASCII letters and digits only (base62): str methods, a third of a regex's cost on the
    # path every junk token takes.
    if not (rest.isascii() and rest.isalnum()):
        return False
    body, checksum = rest[:_RANDOM_LENGTH], rest[_RANDOM_LENGTH:]
    return secrets.compare_digest(_checksum(body), checksum)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in place of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_hint(token: str) -> str:
    """A non-secret reminder of which token this is, for display."""
    return "…" + token[-4:]
