"""The server's background work for SPEC §12 (`server.channel_jobs`): a disabled channel
probed back through its provider's cheapest call on a real upstream, its health in the
metrics, and a watched balance polled into the gauge."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from limits_support import ScriptedUpstream
from test_balances import UPSTREAM_KEY, BalanceUpstream

from quotaledger.relay import balances, channels
from quotaledger.relay.health import DISABLED, OK, HealthBook, after_failure, classify
from quotaledger.server.channel_jobs import ChannelJobs
from quotaledger.server.metrics import Metrics
from quotaledger.settings import Secret, Settings
from quotaledger.store.database import Database

SECRET = "a-secret-key-for-the-channel-jobs-tests-01"


def _channel(database: Database, settings: Settings, name: str, url: str) -> channels.Channel:
    cipher = channels.ChannelCipher(settings.secret_key)
    spec = channels.ChannelSpec(name, url + "/v1", ("m",), Secret(UPSTREAM_KEY),
                                format="openai-chat")  # fmt: skip
    return channels.add_channel(database, cipher, spec)


def _gauge(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_disabled_channel_is_probed_back_and_its_state_is_a_metric(
    settings: Settings, database: Database
) -> None:
    settings = settings.with_overrides(secret_key=Secret(SECRET))
    upstream = ScriptedUpstream(401, 200)
    try:
        added = _channel(database, settings, "flaky", upstream.url)
        book = HealthBook(database)
        book.change(added.id, lambda h: after_failure(h, classify(401), 0, book.policy))
        metrics = Metrics()
        jobs = ChannelJobs(database, settings, metrics)
        await jobs.tick()  # due at once (disabled at time 0): the probe gets 401
        assert book.get(added.id).state == DISABLED
        assert _gauge(metrics, "quotaledger_channel_health", {"channel": "flaky",
                      "state": "disabled"}) == 1  # fmt: skip
        book.change(added.id, lambda h: replace(h, probe_at_ms=0))  # five minutes later
        await jobs.tick()
        assert book.get(added.id).state == OK
        assert upstream.requests == 2
        assert _gauge(metrics, "quotaledger_channel_health", {"channel": "flaky",
                      "state": "ok"}) == 1  # fmt: skip
    finally:
        upstream.close()


async def test_a_watched_balance_is_polled_into_the_gauge(
    settings: Settings, database: Database
) -> None:
    settings = settings.with_overrides(secret_key=Secret(SECRET))
    upstream = BalanceUpstream()
    try:
        added = _channel(database, settings, "deep", upstream.url)
        balances.watch(database, added.id, "deepseek", base_url=upstream.url)
        metrics = Metrics()
        await ChannelJobs(database, settings, metrics).tick()
        assert _gauge(metrics, "quotaledger_channel_balance", {"channel": "deep",
                      "currency": "USD"}) == 20.0  # fmt: skip
        assert balances.get_watch(database, added.id).amount == Decimal("20.00")  # type: ignore[union-attr]
    finally:
        upstream.server.shutdown()
        upstream.server.server_close()
