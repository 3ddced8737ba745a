"""The long-running loop (first round at once, clean stop, jittered schedule) and the
Prometheus endpoint, scraped over real HTTP."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from monitor_support import TOKEN, Relay, Rig, Webhook, account_toml, defaults_toml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quotaledger.monitor.watcher import Watcher


async def test_run_polls_every_account_at_once_and_stops_when_told(rig: Rig, relay: Relay) -> None:
    assert rig.watcher is not None
    stop = asyncio.Event()
    task = asyncio.create_task(rig.watcher.run(stop))
    for _ in range(200):
        if relay.authorizations:
            break
        await asyncio.sleep(0.01)
    assert len(relay.authorizations) == 1
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert len(relay.authorizations) == 1  # the next poll was 5 minutes away


async def test_the_next_poll_comes_after_the_interval_plus_up_to_10_percent_jitter(
    rig: Rig,
) -> None:
    assert rig.watcher is not None
    results = await rig.poll()
    watcher = Watcher(
        rig.watcher.config, {}, rig.watcher.history, rig.watcher.notifier,
        now=rig.clock, rng=random.Random(7),
    )  # fmt: skip
    delays = [watcher._next_delay(results[0]) for _ in range(200)]
    assert min(delays) >= timedelta(minutes=5)
    assert max(delays) <= timedelta(minutes=5, seconds=30)
    assert len(set(delays)) > 100  # spread out, not one fixed offset


async def test_accounts_are_polled_concurrently_up_to_the_bound(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    accounts = "".join(account_toml(relay, f"account{i}") for i in range(5))
    rig: Rig = await rig_factory(defaults_toml(webhook.url, concurrency=2) + accounts)
    relay.delay = 0.1
    results = await rig.poll()
    assert [r.record.state for r in results] == ["OK"] * 5
    assert relay.most_in_flight == 2


async def test_metrics_are_served_for_each_account(rig: Rig, relay: Relay) -> None:
    relay.set_usd(18)
    relay.used_quota = 1_234
    port, stop = rig.metrics.serve(0)
    try:
        await rig.poll()
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        stop()
    values = samples(text)
    assert values["quotaledger_monitor_balance_usd", "prod"] == 18.0
    assert values["quotaledger_monitor_quota", "prod"] == 9_000_000
    assert values["quotaledger_monitor_used_quota", "prod"] == 1_234
    assert values["quotaledger_monitor_state", "prod"] == 1  # WARNING
    assert values["quotaledger_monitor_last_success_timestamp_seconds", "prod"] == (
        rig.clock().timestamp()
    )


async def test_a_failed_poll_shows_in_the_metrics_without_losing_the_last_balance(
    rig: Rig, relay: Relay
) -> None:
    await rig.poll()
    relay.failing = 500
    await rig.poll(minutes=5)
    values = samples(generate_latest(rig.metrics.registry).decode())
    assert values["quotaledger_monitor_consecutive_failures", "prod"] == 1
    assert values["quotaledger_monitor_balance_usd", "prod"] == 50.0
    assert values["quotaledger_monitor_polls_total", "prod", "success"] == 1
    assert values["quotaledger_monitor_polls_total", "prod", "failure"] == 1
    assert values["quotaledger_monitor_last_success_timestamp_seconds", "prod"] == (
        rig.clock().timestamp() - 300
    )


def samples(text: str) -> dict[tuple[str, ...], float]:
    """(metric, account[, result]) -> value, from a Prometheus text exposition."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, *sample.labels.values())
            values[key] = sample.value
    return values


def test_the_watch_command_serves_metrics_and_stops_cleanly_on_sigterm(
    tmp_path: Path, relay: Relay, webhook: Webhook
) -> None:
    config = tmp_path / "watch.toml"
    config.write_text(defaults_toml(webhook.url) + account_toml(relay))
    port = free_port()
    command = [
        sys.executable, "-m", "quotaledger", "watch", "--config", str(config),
        "--state", str(tmp_path / "state.sqlite3"), "--metrics-port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "PROD_TOKEN": TOKEN}
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as process:
        try:
            text = scrape_when_polled(port)
        finally:
            process.send_signal(signal.SIGTERM)
            _, log = process.communicate(timeout=10)
    assert process.returncode == 0
    assert samples(text)["quotaledger_monitor_balance_usd", "prod"] == 50.0
    assert "prod: $50.00 left (25,000,000 quota), OK" in log
    assert TOKEN not in log


def scrape_when_polled(port: int) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
            if "quotaledger_monitor_balance_usd{" in text:
                return text
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the watcher never served its first poll's metrics")


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


async def test_forecast_gauges_disappear_with_the_forecast(rig: Rig, relay: Relay) -> None:
    await rig.poll()
    for _ in range(3):  # $1 an hour: enough history for a forecast
        relay.spend(500_000)
        await rig.poll(hours=1)
    values = samples(generate_latest(rig.metrics.registry).decode())
    assert values["quotaledger_monitor_burn_rate_per_day", "prod"] == 24.0
    assert ("quotaledger_monitor_runs_out_timestamp_seconds", "prod") in values
    await rig.poll(days=8)  # the history is older than every window: no forecast now
    values = samples(generate_latest(rig.metrics.registry).decode())
    assert ("quotaledger_monitor_burn_rate_per_day", "prod") not in values
    assert ("quotaledger_monitor_runs_out_timestamp_seconds", "prod") not in values
    assert values["quotaledger_monitor_balance_usd", "prod"] == 47.0  # the rest stays
