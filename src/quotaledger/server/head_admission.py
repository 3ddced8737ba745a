"""A relay key checked from the request head, before a large body is read (issue 25 item 5).

A relayed body may be 32 MiB (`QUOTALEDGER_RELAY_MAX_BODY_BYTES`). Reading it before
knowing whose it is let anyone make the server hold hundreds of megabytes; so for a relayed
route whose body may be larger than the API's own limit (`QUOTALEDGER_MAX_BODY_BYTES`,
declared longer or chunked) the front door first checks the key from the head: well formed,
known, not deleted, disabled or expired, allowed from this address, its owner enabled, and
neither the account nor the key empty (one indexed read, `keys.admit_async`). The pipeline
checks everything again, with the model, once the body is read; small bodies skip this.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from quotaledger.errors import AuthenticationFailed, InsufficientQuota
from quotaledger.identity import keys
from quotaledger.server.calls import Call

# Where the relay's clients put their key: Anthropic's SDK, Google's, then Authorization.
_KEY_HEADERS = (b"x-api-key", b"x-goog-api-key")


def api_key(call: Call) -> str | None:
    for wanted in _KEY_HEADERS:
        for name, value in call.scope["headers"]:
            if name == wanted:
                return str(value.decode("latin-1"))
    if call.head.token:
        return call.head.token
    query = call.scope.get("query_string", b"")
    if b"key=" in query:
        found = parse_qs(query.decode("latin-1")).get("key")
        return found[0] if found else None
    return None


async def check_key(call: Call) -> None:
    """Raise what the pipeline would for this key (401, 403, 402) without reading a body."""
    raw = api_key(call)
    if not raw:
        raise AuthenticationFailed("missing API key: send Authorization: Bearer sk-ql-...")
    digest = keys.key_digest(raw.strip())
    admission = await keys.admit_async(
        call.services.database, digest, call.client_address(), None, frozenset()
    )
    if admission.key.state(time.time()) == "exhausted":
        raise InsufficientQuota(1, 0, "this API key")
    if admission.user_quota <= 0:
        raise InsufficientQuota(1, admission.user_quota, "the account")
