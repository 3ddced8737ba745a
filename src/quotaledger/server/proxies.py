"""What a request says about its client once reverse proxies are taken into account.

`X-Forwarded-For` and `X-Forwarded-Proto` are believed only when the peer is one of
`QUOTALEDGER_TRUSTED_PROXIES`; anyone else could write them.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.types import Scope

from quotaledger.settings import Network


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The real client address: `X-Forwarded-For` read from the right, skipping the
    trusted proxies themselves.

    Every header line counts, in order, as one list (RFC 9110 §5.3): a client can send its
    own line, and a proxy that adds a second line rather than appending to the first would
    otherwise let that forged line choose the address the limits count."""
    peer = _peer(scope) or "unknown"
    if not trusted or not _is_in(peer, trusted):
        return peer
    lines = Headers(scope=scope).getlist("x-forwarded-for")
    hops = [hop.strip() for line in lines for hop in line.split(",")]
    for hop in reversed(hops):
        if hop and not _is_in(hop, trusted):
            return hop
    return peer


def is_https(scope: Scope, trusted: tuple[Network, ...]) -> bool:
    """Whether the client reached us over TLS: directly, or through a trusted proxy that
    says so in `X-Forwarded-Proto`."""
    if scope.get("scheme") == "https":
        return True
    if not trusted or not _is_in(_peer(scope), trusted):
        return False
    forwarded = Headers(scope=scope).get("x-forwarded-proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _is_in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
