"""Exit codes: one table for every command (SPEC §6)."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    ERROR = 1  # a failed admin command (unknown user, insufficient quota, ...)
    USAGE = 2  # bad flags, bad configuration
    AUTHENTICATION = 3
    PERMISSION = 4
    NETWORK = 5
    RATE_LIMITED = 6
    UNEXPECTED = 7
