"""Logging set-up. Nothing logged here ever holds a token or a password: handlers log
usernames and addresses, and the access log shows paths, which never carry secrets."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
