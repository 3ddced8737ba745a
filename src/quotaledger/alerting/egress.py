"""Where the server's own outgoing alert connections may go (issue 26): public addresses
only, unless the operator allows a host (`QUOTALEDGER_ALERT_ALLOW_HOSTS`).

A user's alert URL names a host; left alone, Apprise would connect wherever it resolves,
loopback and the cloud's metadata service included. The check is made on the address each
connection is actually made to, at send time, inside `guarded()`: while it is active in the
current context, `socket.getaddrinfo` (which urllib3, requests' redirects and smtplib all
call before each connect, and whose answer they connect to) keeps only the addresses the
policy permits, and raises when none is left. Literal and odd spellings of an address
(`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`) are resolved first, so they are judged as
the address they are. Names and addresses are never re-resolved between check and connect.

The hook is process-wide but a no-op outside `guarded()` (one context-variable read):
the relay's and the database's connections are not affected. The context variable is
carried into Apprise's worker threads, which copy the caller's context.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges Python's `is_global` lets through (multicast, IPv6 site-local), and two that embed
# an IPv4 address to judge instead.
_NOT_UNICAST = (
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("fec0::/10"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class BlockedAddress(OSError):
    """No address of a host is one an alert may reach (a connection error to Apprise)."""


@dataclass(frozen=True)
class EgressPolicy:
    """Public addresses, plus the hosts and networks the operator allowed explicitly."""

    hosts: frozenset[str] = frozenset()  # host names, lower case, without a final dot
    networks: tuple[Network, ...] = ()

    @classmethod
    def allowing(cls, entries: tuple[str, ...]) -> EgressPolicy:
        """From `QUOTALEDGER_ALERT_ALLOW_HOSTS`' entries: host names, addresses, networks."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in (e.strip() for e in entries):
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if entry:
                    hosts.add(_host_name(entry))
        return cls(frozenset(hosts), tuple(networks))

    def permits(self, host: str, address: str) -> bool:
        """Whether a connection to `address`, found for `host`, may be made."""
        if _host_name(host) in self.hosts:
            return True
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])  # no IPv6 zone
        except ValueError:
            return False
        return any(ip in network for network in self.networks) or is_public(ip)


def is_public(ip: Address) -> bool:
    """A globally routed unicast address: not loopback, private, link-local (the metadata
    service), CGNAT, multicast, unspecified or reserved; IPv6 forms that embed an IPv4
    address (mapped, NAT64, 6to4) are judged by it."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
        if ip in _SIX_TO_FOUR:
            return False
    if any(ip in network for network in _NOT_UNICAST if ip.version == network.version):
        return False
    return ip.is_global


def _host_name(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


_active: contextvars.ContextVar[EgressPolicy | None] = contextvars.ContextVar(
    "quotaledger_alert_egress", default=None
)
_unguarded_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    policy = _active.get()
    found = _unguarded_getaddrinfo(host, port, *args, **kwargs)
    if policy is None:
        return found
    name = host.decode() if isinstance(host, bytes) else str(host or "")
    kept = [entry for entry in found if policy.permits(name, str(entry[4][0]))]
    if not kept:
        raise BlockedAddress(f"alerts may not reach the addresses of {name!r}")
    return kept


def install() -> None:
    """Hook `socket.getaddrinfo` (once; harmless outside `guarded`)."""
    socket.getaddrinfo = _guarded_getaddrinfo


@contextmanager
def guarded(policy: EgressPolicy) -> Iterator[None]:
    """Every connection made in this context (and in threads that copy it) obeys `policy`."""
    install()
    token = _active.set(policy)
    try:
        yield
    finally:
        _active.reset(token)
