"""Prometheus gauges per watched account, served by `watch --metrics-port`.

A registry of its own (not the process-wide default) so that several watchers, or tests,
never collide over metric names.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from quotaledger.monitor.forecast import Forecast
from quotaledger.monitor.history import Poll
from quotaledger.monitor.state import SEVERITY, Record


class MonitorMetrics:
    """The gauges, updated after every poll."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        account = ["account"]

        def gauge(name: str, doc: str, labels: list[str] = account) -> Gauge:
            return Gauge(f"quotaledger_monitor_{name}", doc, labels, registry=self.registry)

        self.balance_usd = gauge("balance_usd", "Remaining balance in USD (USD accounts).")
        self.balance = gauge(
            "balance", "Remaining balance in its currency.", ["account", "currency"]
        )
        self.quota = gauge("quota", "Remaining quota (one-api/new-api relays).")
        self.used_quota = gauge("used_quota", "Cumulative used quota.")
        self.state = gauge("state", "Alert state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
        self.failures = gauge("consecutive_failures", "Failed polls in a row.")
        self.last_success = gauge(
            "last_success_timestamp_seconds", "Time of the last successful poll (Unix)."
        )
        self.burn = gauge("burn_rate_per_day", "Spending per day over the shortest window.")
        self.runs_out = gauge("runs_out_timestamp_seconds", "Earliest forecast run-out (Unix).")
        self.polls = Counter(
            "quotaledger_monitor_polls", "Polls by result.", ["account", "result"],
            registry=self.registry,
        )  # fmt: skip

    def observe(self, poll: Poll, record: Record, forecast: Forecast | None) -> None:
        """Update every gauge of `poll.account` after a poll."""
        name = poll.account
        self.polls.labels(name, "success" if poll.ok else "failure").inc()
        self.failures.labels(name).set(record.failures)
        if record.state is not None:
            self.state.labels(name).set(SEVERITY[record.state])
        if poll.ok:
            self._balance(poll)
        # No forecast (any more): no series, rather than a stale value that looks current.
        if forecast is None:
            _drop(self.burn, name)
        else:
            self.burn.labels(name).set(forecast.rate)
        if forecast is None or forecast.soonest is None:
            _drop(self.runs_out, name)
        else:
            self.runs_out.labels(name).set(forecast.soonest.timestamp())

    def _balance(self, poll: Poll) -> None:
        name = poll.account
        assert poll.amount is not None and poll.currency is not None
        self.last_success.labels(name).set(poll.at.timestamp())
        self.balance.labels(name, poll.currency).set(float(poll.amount))
        if poll.currency == "USD":
            self.balance_usd.labels(name).set(float(poll.amount))
        if poll.quota is not None:
            self.quota.labels(name).set(poll.quota)
        if poll.used_quota is not None:
            self.used_quota.labels(name).set(poll.used_quota)

    def serve(self, port: int, host: str = "127.0.0.1") -> tuple[int, Callable[[], None]]:
        """Serve `/metrics` on `host:port` in a thread; returns the bound port and a stopper."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return int(server.server_port), stop


def _drop(gauge: Gauge, account: str) -> None:
    with suppress(KeyError):  # older prometheus_client raise it for a series never set
        gauge.remove(account)
