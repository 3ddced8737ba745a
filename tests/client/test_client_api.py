"""The public surface: exported names, and pure pieces (formatting, URLs, retry delays)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

import quotaledger.client
from quotaledger.client import PROVIDERS, Balance, ConfigurationError
from quotaledger.client.providers.base import as_int, site_root
from quotaledger.client.retry import RetryPolicy
from quotaledger.client.statuses import retry_after

CONTRACT = {
    "BalanceClient", "AsyncBalanceClient", "Balance", "BalanceError", "AuthenticationError",
    "PermissionDeniedError", "RateLimitedError", "ProviderError", "NetworkError", "PROVIDERS",
}  # fmt: skip


def test_every_contract_name_is_exported() -> None:
    assert set(quotaledger.client.__all__) >= CONTRACT
    assert all(hasattr(quotaledger.client, name) for name in quotaledger.client.__all__)


def test_registry_names_every_provider() -> None:
    assert set(PROVIDERS) == {
        "newapi",
        "newapi-key",
        "openrouter",
        "deepseek",
        "siliconflow",
        "moonshot",
    }
    assert all(cls.name == name for name, cls in PROVIDERS.items())


def test_balance_command_does_not_import_the_server_stack() -> None:
    code = "import sys, quotaledger.cli.balance; print('\\n'.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = {"starlette", "fastapi", "sqlalchemy", "uvicorn", "argon2", "alembic", "apprise"}
    heavy |= {"aiohttp"}  # the async client's: the CLI is synchronous
    assert heavy.isdisjoint(name.split(".")[0] for name in loaded)


def test_usd_is_none_for_other_currencies() -> None:
    balance = Balance(provider="deepseek", amount=Decimal("110"), currency="CNY")
    assert (balance.usd, balance.used_usd) == (None, None)


@pytest.mark.parametrize(
    ("amount", "text"),
    [("49.995818", "$49.99"), ("-0.509", "-$0.50"), ("1234567.8", "$1,234,567.80"), ("0", "$0.00")],
)
def test_amounts_are_truncated_to_cents(amount: str, text: str) -> None:
    assert Balance(provider="x", amount=Decimal(amount), currency="USD").format_amount() == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("1e40", "$10,000,000,000,000,000,000,000,000,000,000,000,000,000.00"),
        ("-2E+34", "-$20,000,000,000,000,000,000,000,000,000,000,000.00"),
        ("1e999999", "1E+999999 USD"),  # too long to write out: said as it is, no exception
        ("NaN", "NaN USD"),
    ],
)
def test_any_amount_can_be_formatted(amount: str, text: str) -> None:
    assert Balance(provider="x", amount=Decimal(amount), currency="USD").format_amount() == text


def test_balance_is_frozen_and_hashable() -> None:
    balance = Balance(provider="x", amount=Decimal(1), currency="USD", raw={"a": [1]})
    with pytest.raises(AttributeError):
        balance.amount = Decimal(2)  # type: ignore[misc]
    assert hash(balance) == hash(Balance(provider="x", amount=Decimal(1), currency="USD"))


@pytest.mark.parametrize(
    ("pasted", "root"),
    [
        ("https://relay.example.com/", "https://relay.example.com"),
        ("https://relay.example.com/v1", "https://relay.example.com"),
        ("https://relay.example.com/api/user/self", "https://relay.example.com"),
        ("https://example.com/relay/v1/", "https://example.com/relay"),
        ("http://[::1]:8000/v1", "http://[::1]:8000"),
        ("https://bücher.example/", "https://bücher.example"),
    ],
)
def test_pasted_urls_become_the_site_root(pasted: str, root: str) -> None:
    assert site_root(pasted, ("/api/user/self", "/v1")) == root


@pytest.mark.parametrize("pasted", ["relay.example.com", "127.0.0.1:8000", "localhost:8000/v1"])
def test_a_base_url_without_a_scheme_is_refused_with_a_hint(pasted: str) -> None:
    # Guessing https used to end, for an http-only relay, in three TLS failures.
    with pytest.raises(ConfigurationError, match="add http:// or https://"):
        site_root(pasted, ("/v1",))


@pytest.mark.parametrize(
    "pasted", ["http://not a url", "https://relay example.com", "https://relay.example.com/ v1",
               "http://exa\x1bmple.com", "http://relay.example.com\n"]
)  # fmt: skip
def test_a_base_url_with_spaces_or_control_characters_is_refused(pasted: str) -> None:
    with pytest.raises(ConfigurationError, match="not a usable URL"):
        site_root(pasted, ("/v1",))


@pytest.mark.parametrize("value", [12, 12.0, Decimal("12"), "12"])
def test_integers_are_read_leniently(value: object) -> None:
    assert as_int(value) == 12


@pytest.mark.parametrize("value", [True, 1.5, "lots", None, [1]])
def test_non_integers_are_refused(value: object) -> None:
    assert as_int(value) is None


def test_retry_delays_grow_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(retries=10, backoff=1.0)
    assert 0.5 <= policy.delay(1) <= 1.0
    assert 2.0 <= policy.delay(3) <= 4.0
    assert 4.0 <= policy.delay(10) <= 8.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("soon") is None


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "1e400"])
def test_retry_after_ignores_what_is_not_a_finite_wait(value: str) -> None:
    assert retry_after(value) is None
