"""The relay's settings: read from QUOTALEDGER_*, defaults as the SPEC says, the secret key
hidden, nonsense refused with the variable named."""

from __future__ import annotations

import pytest

from quotaledger.settings import Settings, SettingsError


def test_relay_defaults_follow_the_spec() -> None:
    settings = Settings.from_env({})

    assert settings.secret_key is None
    assert settings.relay_min_output_tokens == 1024
    assert settings.relay_retries == 2
    assert settings.relay_reservation_ttl == 900
    assert settings.relay_stream_idle_timeout == 300
    assert settings.relay_sweep_interval == 60


def test_relay_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "QUOTALEDGER_SECRET_KEY": "s" * 40,
            "QUOTALEDGER_RELAY_RETRIES": "0",
            "QUOTALEDGER_RELAY_RESERVATION_TTL": "2",
        }
    )

    assert settings.secret_key is not None and settings.secret_key.reveal() == "s" * 40
    assert "s" * 40 not in repr(settings)
    assert (settings.relay_retries, settings.relay_reservation_ttl) == (0, 2)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("QUOTALEDGER_RELAY_RESERVATION_TTL", "0"),
        ("QUOTALEDGER_RELAY_RETRIES", "-1"),
        ("QUOTALEDGER_RELAY_MIN_OUTPUT_TOKENS", "lots"),
    ],
)
def test_a_bad_relay_setting_is_refused_with_its_name(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_the_retired_per_key_relay_limit_refuses_to_start_and_says_what_replaced_it() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"QUOTALEDGER_RATE_LIMIT_RELAY": "600/minute"})
    assert "QUOTALEDGER_RATE_LIMIT_RELAY" in str(refused.value)
    assert "--rpm" in str(refused.value)
    Settings.from_env({"QUOTALEDGER_RATE_LIMIT_RELAY": "off"})  # it asked for no limit
