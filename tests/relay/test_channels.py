"""Channels (SPEC §8, §8a): upstream keys encrypted at rest and never shown, the base URL
rule, and the order in which channels are tried (priority, weight, cool-down)."""

from __future__ import annotations

import logging
import random
from collections import Counter

import pytest
from sqlalchemy import select

from quotaledger.billing import pricing
from quotaledger.errors import AlreadyExists, InvalidInput, NotConfigured, NotFound
from quotaledger.relay import channels
from quotaledger.relay.channels import (
    Channel,
    ChannelCipher,
    ChannelSpec,
    choose_channels,
)
from quotaledger.settings import Secret
from quotaledger.store.database import Database
from quotaledger.store.tables import channels as channels_table

SECRET = Secret("a-test-secret-key-of-more-than-32-characters")
UPSTREAM_KEY = "sk-upstream-0123456789abcdefXYZW"


def _spec(name: str = "main", **changes: object) -> ChannelSpec:
    values: dict[str, object] = {
        "name": name, "base_url": "https://api.example.com/v1",
        "models": ("gpt-4o-mini", "gpt-4o"), "api_key": Secret(UPSTREAM_KEY),
    }  # fmt: skip
    return ChannelSpec(**(values | changes))  # type: ignore[arg-type]


def test_without_a_secret_key_no_channel_key_can_be_stored() -> None:
    with pytest.raises(NotConfigured, match="QUOTALEDGER_SECRET_KEY is not set"):
        ChannelCipher(None)
    with pytest.raises(NotConfigured, match="too short"):
        ChannelCipher(Secret("short"))


def test_a_key_encrypted_with_one_secret_cannot_be_read_with_another() -> None:
    token = ChannelCipher(SECRET).encrypt(UPSTREAM_KEY)

    assert UPSTREAM_KEY not in token
    assert ChannelCipher(SECRET).decrypt(token) == UPSTREAM_KEY
    with pytest.raises(NotConfigured, match="was the secret key changed"):
        ChannelCipher(Secret("another-secret-key-of-32-characters-or-more")).decrypt(token, "x")


def test_a_channel_key_is_stored_encrypted_shown_as_a_hint_and_never_logged(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cipher = ChannelCipher(SECRET)

    channel = channels.add_channel(database, cipher, _spec(model_map={"gpt-4o": "gpt-4o-2024"}))

    assert channel.api_key_hint == "…XYZW"
    assert UPSTREAM_KEY not in repr(channel) and channel.api_key_encrypted not in repr(channel)
    assert SECRET.reveal() not in repr(cipher)
    with database.read() as connection:
        row = connection.execute(select(channels_table)).one()
    assert UPSTREAM_KEY not in repr(tuple(row))
    assert channel.api_key(cipher) == UPSTREAM_KEY
    assert UPSTREAM_KEY not in caplog.text and "main" in caplog.text
    assert channel.upstream_model("gpt-4o") == "gpt-4o-2024"
    assert channel.upstream_model("gpt-4o-mini") == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com/v1"),
        ("https://api.anthropic.com/", "https://api.anthropic.com/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("http://127.0.0.1:8080/api/paas/v4", "http://127.0.0.1:8080/api/paas/v4"),
    ],
)
def test_the_base_url_is_what_the_path_after_v1_is_appended_to(given: str, stored: str) -> None:
    assert channels.normalise_base_url(given) == stored


@pytest.mark.parametrize(
    "url", ["ftp://x/v1", "https://user:pw@x/v1", "https://x/v1?key=abc", "api.openai.com"]
)
def test_a_base_url_with_credentials_or_another_scheme_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="base_url"):
        channels.normalise_base_url(url)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "has space"}, "name"),
        ({"models": ()}, "models"),
        ({"model_map": {"other": "x"}}, "map"),
        ({"format": "cohere"}, "format"),
        ({"weight": 0}, "weight"),
        ({"api_key": Secret("two words")}, "api_key"),
    ],
)
def test_a_bad_channel_is_refused_and_nothing_stored(
    database: Database, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput, match=field):
        channels.add_channel(database, ChannelCipher(SECRET), _spec(**changes))
    assert channels.list_channels(database) == []


def test_channels_are_listed_disabled_enabled_and_deleted_by_name(database: Database) -> None:
    cipher = ChannelCipher(SECRET)
    channels.add_channel(database, cipher, _spec("low", priority=0))
    channels.add_channel(database, cipher, _spec("high", priority=5))
    with pytest.raises(AlreadyExists):
        channels.add_channel(database, cipher, _spec("low"))

    assert [c.name for c in channels.list_channels(database)] == ["high", "low"]
    channels.set_channel_status(database, "low", "disabled")
    assert channels.get_channel(database, "low").status == "disabled"
    channels.delete_channel(database, "high")
    with pytest.raises(NotFound):
        channels.get_channel(database, "high")
    with pytest.raises(NotFound):
        channels.set_channel_status(database, "high", "enabled")


def test_a_model_is_offered_when_priced_and_served_by_an_enabled_channel(
    database: Database,
) -> None:
    cipher = ChannelCipher(SECRET)
    channels.add_channel(database, cipher, _spec("a", models=("priced", "unpriced")))
    channels.add_channel(database, cipher, _spec("b", models=("disabled-only",)))
    channels.set_channel_status(database, "b", "disabled")
    for model in ("priced", "disabled-only", "no-channel"):
        pricing.set_price(database, pricing.make_price(model, per_call_usd="0.01"))

    assert channels.offered_models(database) == {"priced"}


# ------------------------------------------------------------------ choosing


def _channel(name: str, priority: int = 0, weight: int = 1, **changes: object) -> Channel:
    values: dict[str, object] = {
        "id": 0, "name": name, "base_url": "http://x/v1", "format": "openai",
        "models": ("m",), "model_map": {}, "priority": priority, "weight": weight,
        "status": "enabled", "api_key_hint": "…", "created_at": 0, "api_key_encrypted": "",
    }  # fmt: skip
    return Channel(**(values | changes))  # type: ignore[arg-type]


def test_higher_priority_channels_come_first() -> None:
    pool = [_channel("backup", 0), _channel("main", 10), _channel("mid", 5)]

    assert [c.name for c in choose_channels("m", pool)] == ["main", "mid", "backup"]


def test_within_a_priority_the_weight_decides_how_often_a_channel_is_first() -> None:
    pool = [_channel("heavy", weight=3), _channel("light", weight=1)]
    rng = random.Random(7)

    firsts = Counter(choose_channels("m", pool, rng=rng)[0].name for _ in range(20_000))

    assert 0.73 < firsts["heavy"] / 20_000 < 0.77  # 3 / (3 + 1)


def test_only_enabled_channels_serving_the_model_are_candidates_native_ones_first() -> None:
    pool = [
        _channel("off", status="disabled"), _channel("other", models=("x",)),
        _channel("claude", format="anthropic"), _channel("ok"),
    ]  # fmt: skip

    def native(c: Channel) -> bool:
        return c.format == "openai"

    for _ in range(50):  # whatever the draw, the native channel comes first
        ordered = choose_channels("m", pool, preferred=native, rng=random.Random())
        assert [c.name for c in ordered] == ["ok", "claude"]


def test_a_higher_priority_converted_channel_still_comes_before_a_native_one() -> None:
    pool = [_channel("claude", format="anthropic", priority=5), _channel("ok")]

    ordered = choose_channels("m", pool, preferred=lambda c: c.format == "openai")
    assert [c.name for c in ordered] == ["claude", "ok"]
