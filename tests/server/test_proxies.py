"""The client address behind trusted reverse proxies: `X-Forwarded-For` is read over ALL
its header lines (as one list, in order, RFC 9110 §5.3), from the right, so a line the
client forged before the proxy's own cannot choose the address the limits count."""

from __future__ import annotations

import ipaddress

from starlette.testclient import TestClient

from quotaledger.server.app import create_app
from quotaledger.server.proxies import client_address
from quotaledger.settings import Settings
from quotaledger.store.database import Database

PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


def _scope(peer: str, *forwarded: str) -> dict[str, object]:
    headers = [(b"host", b"example"), *((b"x-forwarded-for", f.encode()) for f in forwarded)]
    return {"type": "http", "client": (peer, 1234), "headers": headers}


def test_every_x_forwarded_for_line_is_read_and_the_rightmost_untrusted_hop_wins() -> None:
    scope = _scope("10.0.0.2", "6.6.6.6", "198.51.100.1, 10.0.0.3")

    assert client_address(scope, PROXIES) == "198.51.100.1"


def test_a_forged_line_before_the_proxys_own_does_not_choose_the_address() -> None:
    # The client sent its own X-Forwarded-For; the proxy added a second line with the
    # address it saw instead of appending to the first.
    scope = _scope("10.0.0.2", "203.0.113.66", "198.51.100.1")

    assert client_address(scope, PROXIES) == "198.51.100.1"


def test_hops_behind_several_trusted_proxies_across_lines_are_skipped() -> None:
    scope = _scope("10.0.0.2", "6.6.6.6, 198.51.100.1", "10.0.0.9", "10.0.0.8")

    assert client_address(scope, PROXIES) == "198.51.100.1"


def test_only_trusted_hops_leave_the_peer_as_the_address() -> None:
    assert client_address(_scope("10.0.0.2", "10.0.0.9", "10.0.0.8"), PROXIES) == "10.0.0.2"


def test_lines_from_an_untrusted_peer_are_ignored() -> None:
    assert client_address(_scope("203.0.113.9", "1.1.1.1", "2.2.2.2"), PROXIES) == "203.0.113.9"


def test_forged_lines_do_not_escape_the_login_limit_per_address(
    settings: Settings, database: Database, make_user
) -> None:
    make_user("alice")
    app = create_app(
        settings.with_overrides(
            trusted_proxies=PROXIES,
            rate_limit_login="100/minute",
            rate_limit_login_address="3/minute",
        ),
        database,
    )
    with TestClient(app, client=("10.0.0.2", 1)) as proxied:
        codes = [
            proxied.post(
                "/api/user/login",
                json={"username": "alice", "password": f"guess-number-{attempt}"},
                headers=[
                    ("X-Forwarded-For", f"203.0.113.{attempt}"),  # forged by the client
                    ("X-Forwarded-For", "198.51.100.1"),  # added by the proxy
                ],
            ).status_code
            for attempt in range(5)
        ]

    assert codes == [401, 401, 401, 429, 429]
