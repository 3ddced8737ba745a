"""What a user's alert URL may say (issue 26): a scheme from the operator's short list, and
no say in how the request is made.

Apprise's generic webhooks (`json://`, `form://`, `xml://`, and others with the same
syntax) let the URL pick the HTTP method (`?method=DELETE`), add headers (`+Name=value`:
`+Metadata-Flavor=Google`), query parameters (`-name=value`) and payload fields
(`:name=value`). From a user, those turn a notification into a request of their design, so
a URL carrying any of them is refused, when saved and again when sent (a URL saved before
the rule is not sent). Where the request may go is `egress.py`'s rule, checked on each
connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from quotaledger.alerting.egress import EgressPolicy

# Services with fixed API hosts, plus mail, self-hostable push servers and JSON webhooks.
DEFAULT_SCHEMES = (
    "mailto", "mailtos", "slack", "discord", "tgram", "workflows", "ntfy", "ntfys",
    "gotify", "gotifys", "bark", "barks", "dingtalk", "wecombot", "feishu", "lark",
    "json", "jsons",
)  # fmt: skip
_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*)://")
_REQUEST_SHAPING = ("+", "-", ":")  # Apprise's header, parameter and payload prefixes


@dataclass(frozen=True)
class AlertPolicy:
    """The schemes users may use and where their alerts may connect."""

    schemes: frozenset[str] = frozenset(DEFAULT_SCHEMES)
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    @classmethod
    def of(cls, schemes: tuple[str, ...], hosts: tuple[str, ...]) -> AlertPolicy:
        """From `QUOTALEDGER_ALERT_ALLOW_SCHEMES` and `QUOTALEDGER_ALERT_ALLOW_HOSTS`."""
        return cls(frozenset(s.strip().lower() for s in schemes), EgressPolicy.allowing(hosts))

    def refusal(self, url: str) -> str | None:
        """Why a user may not use `url`, or None. Never repeats the URL (it holds secrets)."""
        match = _SCHEME.match(url)
        if match is None:
            return "not an Apprise URL (expected scheme://...)"
        scheme = match.group(1).lower()
        if scheme not in self.schemes:
            allowed = ", ".join(f"{s}://" for s in sorted(self.schemes))
            return f"{scheme}:// is not allowed on this server (allowed: {allowed})"
        return _shaping_refusal(url)


def _shaping_refusal(url: str) -> str | None:
    query = url.partition("?")[2].partition("#")[0]
    # Not `parse_qsl`: it reads "+" as a space, and Apprise reads it as the header prefix.
    for part in re.split("[&;]", query):
        name = unquote(part.partition("=")[0]).strip()
        if name.lower() == "method" or name.startswith(_REQUEST_SHAPING):
            return (
                "may not choose the HTTP method, headers, query parameters or payload "
                "fields (?method=, +Header=, -param=, :field=)"
            )
    return None
