"""The watcher end to end: a relay on 127.0.0.1 whose balance the test sets, notifications
captured by a webhook receiver (`json://`) and an in-memory Apprise plugin, a clock the test
moves. Each test is one story of an account's balance."""

from __future__ import annotations

from typing import Any

import pytest
from monitor_support import TOKEN, Relay, Rig, Webhook, account_toml, defaults_toml

POLL = {"minutes": 5}


async def test_the_first_healthy_poll_is_silent(rig: Rig, relay: Relay, webhook: Webhook) -> None:
    results = await rig.poll()
    assert results[0].record.state == "OK"
    assert webhook.received == []


async def test_a_drop_below_warn_sends_one_alert(
    rig: Rig, relay: Relay, webhook: Webhook, memory: list[Any]
) -> None:
    await rig.poll()
    relay.set_usd(18)
    await rig.poll(**POLL)
    await rig.poll(**POLL)
    relay.set_usd(17)
    await rig.poll(**POLL)
    assert [m["type"] for m in webhook.received] == ["warning"]
    assert "prod WARNING" in webhook.received[0]["title"]
    assert len(memory) == 1


async def test_a_reminder_comes_only_after_repeat(rig: Rig, relay: Relay, webhook: Webhook) -> None:
    relay.set_usd(18)
    await rig.poll()
    for _ in range(71):  # 5 h 55 min of polls every 5 minutes
        await rig.poll(**POLL)
    assert len(webhook.received) == 1
    await rig.poll(**POLL)  # 6 h after the alert
    assert len(webhook.received) == 2
    assert webhook.received[1]["title"] == "[quotaledger] reminder: prod still WARNING"
    await rig.poll(**POLL)
    assert len(webhook.received) == 2


async def test_a_drop_straight_to_critical_sends_one_alert(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    await rig.poll()
    relay.set_usd(3)
    await rig.poll(**POLL)
    await rig.poll(**POLL)
    assert [m["type"] for m in webhook.received] == ["failure"]
    assert "prod CRITICAL" in webhook.received[0]["title"]


async def test_a_top_up_sends_one_resolved_message(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    relay.set_usd(3)
    await rig.poll()
    relay.set_usd(100)
    await rig.poll(**POLL)
    await rig.poll(**POLL)
    assert [m["type"] for m in webhook.received] == ["failure", "success"]
    resolved = webhook.received[1]
    assert resolved["title"] == "[quotaledger] prod OK again: $100.00 left (50,000,000 quota)"
    assert "(was CRITICAL)" in resolved["message"]


async def test_a_partial_recovery_from_critical_to_warning_sends_one_message(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    relay.set_usd(3)
    await rig.poll()
    relay.set_usd(12)
    await rig.poll(**POLL)
    assert [m["type"] for m in webhook.received] == ["failure", "warning"]
    assert "(was CRITICAL)" in webhook.received[1]["message"]


async def test_a_balance_hovering_at_a_threshold_sends_nothing_more(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    relay.set_usd("19.90")
    await rig.poll()
    for usd in ["20.50", "19.80", "21.90", "19.95", "21.00"] * 4:  # within 10 % above $20
        relay.set_usd(usd)
        await rig.poll(**POLL)
    assert len(webhook.received) == 1
    relay.set_usd("22.10")  # clears $20 + 10 %
    await rig.poll(**POLL)
    assert [m["type"] for m in webhook.received] == ["warning", "success"]


async def test_one_failed_poll_sends_nothing(rig: Rig, relay: Relay, webhook: Webhook) -> None:
    await rig.poll()
    relay.failing = 502
    results = await rig.poll(**POLL)
    assert results[0].record.state == "OK"
    assert results[0].record.failures == 1
    relay.failing = None
    await rig.poll(**POLL)
    assert webhook.received == []


async def test_three_failed_polls_in_a_row_send_one_unknown_alert(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    await rig.poll()
    relay.failing = 503
    for _ in range(4):
        await rig.poll(**POLL)
    assert len(webhook.received) == 1
    assert webhook.received[0]["title"] == "[quotaledger] prod UNKNOWN: balance cannot be read"
    assert "3 polls in a row failed" in webhook.received[0]["message"]
    assert "Last known: $50.00 left" in webhook.received[0]["message"]
    relay.failing = None
    await rig.poll(**POLL)
    assert [m["type"] for m in webhook.received] == ["failure", "success"]


async def test_a_negative_balance_is_critical(rig: Rig, relay: Relay, webhook: Webhook) -> None:
    relay.quota = -250_000  # the relay let a debit overshoot
    results = await rig.poll()
    assert results[0].record.state == "CRITICAL"
    assert "-$0.50 left" in webhook.received[0]["title"]
    assert "negative balance" in webhook.received[0]["message"]


async def test_a_restart_between_polls_changes_nothing(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    relay.set_usd(18)
    await rig.poll()
    await rig.restart()
    await rig.poll(hours=3)
    await rig.restart()
    await rig.poll(hours=2, minutes=59)
    assert len(webhook.received) == 1
    await rig.restart()
    await rig.poll(minutes=1)  # 6 h after the alert, across three restarts
    assert len(webhook.received) == 2


async def test_an_undelivered_alert_is_sent_at_the_next_poll(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    nowhere = "json://127.0.0.1:9/unreachable"  # the discard port: nothing listens
    rig: Rig = await rig_factory(defaults_toml(nowhere) + account_toml(relay))
    relay.set_usd(18)
    results = await rig.poll()
    assert results[0].alert is not None and not results[0].delivered
    await rig.stop()
    rig.config_path.write_text(defaults_toml(webhook.url) + account_toml(relay))
    await rig.start()
    await rig.poll(**POLL)
    await rig.poll(**POLL)
    assert len(webhook.received) == 1
    assert "prod WARNING" in webhook.received[0]["title"]


async def test_an_alert_that_reached_one_of_two_urls_is_not_sent_again(
    rig_factory: Any, relay: Relay, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = "json://127.0.0.1:9/unreachable"
    rig: Rig = await rig_factory(defaults_toml(webhook.url, nowhere) + account_toml(relay))
    relay.set_usd(18)
    await rig.poll()
    await rig.poll(**POLL)
    assert len(webhook.received) == 1
    assert "notification not delivered to 1 of 2 URLs" in caplog.text


async def test_accounts_changing_in_one_poll_share_one_digest(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    accounts = account_toml(relay, "prod") + account_toml(relay, "dev", token_env="DEV_TOKEN")
    rig: Rig = await rig_factory(defaults_toml(webhook.url) + accounts)
    relay.set_usd(3)
    await rig.poll()
    assert len(webhook.received) == 1
    digest = webhook.received[0]
    assert digest["title"] == "[quotaledger] 2 accounts: prod CRITICAL, dev CRITICAL"
    assert "prod is CRITICAL" in digest["message"] and "dev is CRITICAL" in digest["message"]


async def test_thresholds_in_another_currency_end_in_unknown_with_the_reason(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    cny = account_toml(relay).replace(
        "warn_usd = 20\ncritical_usd = 5", 'currency = "CNY"\nwarn = 100\ncritical = 20'
    )
    rig: Rig = await rig_factory(defaults_toml(webhook.url) + cny)
    for _ in range(3):
        await rig.poll(**POLL)
    assert len(webhook.received) == 1
    assert (
        "last error: the balance is in USD, the thresholds in CNY: use warn_usd/critical_usd."
        in webhook.received[0]["message"]
    )


async def test_without_digest_each_account_gets_its_own_message(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    accounts = account_toml(relay, "prod") + account_toml(relay, "dev", token_env="DEV_TOKEN")
    rig: Rig = await rig_factory(defaults_toml(webhook.url, digest=False) + accounts)
    relay.set_usd(3)
    await rig.poll()
    assert sorted(m["title"] for m in webhook.received) == [
        "[quotaledger] dev CRITICAL: $3.00 left (1,500,000 quota)",
        "[quotaledger] prod CRITICAL: $3.00 left (1,500,000 quota)",
    ]


async def test_an_alert_says_account_balance_threshold_forecast_and_time(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    relay.set_usd(30)
    await rig.poll()
    for _ in range(10):  # $1 an hour for 10 hours, through the usage counter
        relay.spend(QUOTA_PER_HOUR)
        await rig.poll(hours=1)
    assert webhook.received[0]["message"] == (
        "prod is WARNING: $20.00 left (10,000,000 quota), at or below the warning threshold "
        "$20.00.\nBurn $24.00/day; runs out in about 20 hours (around 2026-11-21 18:00 UTC)."
        "\nChecked 2026-11-20 22:00 UTC."
    )


async def test_the_token_never_reaches_messages_or_the_state_file(
    rig: Rig, relay: Relay, webhook: Webhook
) -> None:
    relay.failing = 401
    for _ in range(3):
        await rig.poll(**POLL)
    assert relay.authorizations[-1] == TOKEN  # it was sent, to the relay only
    assert webhook.received and TOKEN not in str(webhook.received)
    assert rig.history is not None
    rig.history.close()
    for path in rig.state.parent.glob("state.sqlite3*"):
        assert TOKEN.encode() not in path.read_bytes()
    rig.history = None


QUOTA_PER_HOUR = 500_000
