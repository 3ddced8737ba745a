"""What the relay offers: priced models served by a channel it can call."""

from __future__ import annotations

import logging

import pytest

from quotaledger.billing import pricing
from quotaledger.relay import channels
from quotaledger.relay.offers import read_offers
from quotaledger.secret import Secret
from quotaledger.store.database import Database

SECRET = Secret("the-secret-of-this-server-0123456789")
OTHER = Secret("a-secret-this-server-does-not-have-42")


def _channel(database: Database, secret: Secret, name: str, models: tuple[str, ...]) -> None:
    spec = channels.ChannelSpec(name, "http://127.0.0.1:9", models, Secret("sk-upstream-0123456"))
    channels.add_channel(database, channels.ChannelCipher(secret), spec)


def test_a_model_is_offered_when_priced_and_served_by_a_callable_channel(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    for model in ("served", "only-on-a-foreign-channel"):  # "unpriced" has no price
        pricing.set_price(database, pricing.make_price(model, per_call_usd="0.01"))
    _channel(database, SECRET, "ours", ("served", "unpriced"))
    _channel(database, OTHER, "foreign", ("only-on-a-foreign-channel",))
    warned: set[str] = set()
    with caplog.at_level(logging.WARNING, logger="quotaledger.relay"):
        offers = read_offers(database, channels.ChannelCipher(SECRET), warned)
        read_offers(database, channels.ChannelCipher(SECRET), warned)
    assert offers.models == {"served"}
    assert [c.name for c in offers.channels] == ["ours"]
    assert offers.callable_as["ours"].target.auth_headers == (
        ("authorization", "Bearer sk-upstream-0123456"),
    )
    said = [r for r in caplog.records if "foreign" in r.getMessage()]
    assert len(said) == 1  # once, not at every refresh
    assert "sk-upstream" not in caplog.text


def test_without_a_secret_key_nothing_is_offered(database: Database) -> None:
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.01"))
    _channel(database, SECRET, "ours", ("m",))
    assert read_offers(database, None, set()).models == frozenset()
