"""Prometheus metrics (per process: with `--workers N` each worker counts its own)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from quotaledger.billing.settlement import Outcome, Settlement

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counts = _Tallies()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.registry.register(self._counts)
        self.security_events = Counter(
            "quotaledger_security_events",
            "Login failures, tokens issued, lockouts",
            ["event"],
            registry=self.registry,
        )

        self._relay_metrics()
        self._channel_metrics()

    def _relay_metrics(self) -> None:
        """SPEC §8: requests by model and status, latency and time to first token,
        tokens, quota charged, open reservations, written-off quota."""
        registry = self.registry
        self.relay_requests = Counter(
            "quotaledger_relay_requests", "Relayed requests", ["model", "status"],
            registry=registry,
        )  # fmt: skip
        self.relay_latency = Histogram(
            "quotaledger_relay_latency_seconds", "Relayed request duration", ["model"],
            buckets=_SECONDS, registry=registry,
        )  # fmt: skip
        self.relay_ttft = Histogram(
            "quotaledger_relay_time_to_first_token_seconds",
            "Time until the upstream's answer began", ["model"], buckets=_SECONDS,
            registry=registry,
        )  # fmt: skip
        self.relay_tokens = Counter(
            "quotaledger_relay_tokens", "Tokens relayed", ["model", "kind"], registry=registry
        )
        self.relay_quota_charged = Counter(
            "quotaledger_relay_quota_charged", "Quota charged for relayed requests", ["model"],
            registry=registry,
        )  # fmt: skip
        self.relay_written_off = Counter(
            "quotaledger_relay_quota_written_off",
            "Quota a request cost beyond what its funding rows covered", ["model"],
            registry=registry,
        )  # fmt: skip
        self.open_reservations = Gauge(
            "quotaledger_relay_open_reservations",
            "Reservations held by requests in flight in this process", registry=registry,
        )  # fmt: skip
        self.relay_sockets = Counter(
            "quotaledger_relay_sockets", "Responses WebSockets accepted (SPEC §14)",
            registry=registry,
        )  # fmt: skip
        self.relay_socket_messages = Counter(
            "quotaledger_relay_socket_messages",
            "response.create messages on Responses WebSockets, by how they were answered "
            "(relayed; continued: a previous_response_id of the socket expanded; warmup; "
            "refused)", ["kind"], registry=registry,
        )  # fmt: skip

    def _channel_metrics(self) -> None:
        """SPEC §12: per channel, requests by status class, latency and time to first
        token, health state and upstream balance; limit refusals by kind."""
        registry = self.registry
        self.channel_requests = Counter(
            "quotaledger_channel_requests", "Upstream attempts per channel",
            ["channel", "status_class"], registry=registry,
        )  # fmt: skip
        self.channel_latency = Histogram(
            "quotaledger_channel_latency_seconds", "Upstream attempt duration", ["channel"],
            buckets=_SECONDS, registry=registry,
        )  # fmt: skip
        self.channel_ttft = Histogram(
            "quotaledger_channel_time_to_first_token_seconds",
            "Time until the channel's answer began", ["channel"], buckets=_SECONDS,
            registry=registry,
        )  # fmt: skip
        self.channel_health = Gauge(
            "quotaledger_channel_health", "1 for the channel's health state (ok, cooling, "
            "disabled) as this instance knows it", ["channel", "state"], registry=registry,
        )  # fmt: skip
        self.channel_balance = Gauge(
            "quotaledger_channel_balance", "The channel's upstream balance, in its currency",
            ["channel", "currency"], registry=registry,
        )  # fmt: skip
        self.limit_refusals = Counter(
            "quotaledger_limit_refusals", "Requests refused by a rate limit, by kind "
            "(requests, tokens, concurrency, unavailable)", ["kind"], registry=registry,
        )  # fmt: skip
        self.out_of_money = Counter(
            "quotaledger_relay_out_of_money", "Relayed requests refused because the balance "
            "could not cover the prompt and the least output, by client format", ["format"],
            registry=registry,
        )  # fmt: skip
        self.limits_fallbacks = Counter(
            "quotaledger_limits_fallbacks",
            "Limit checks made locally because the shared counters (Redis) were unreachable",
            registry=registry,
        )  # fmt: skip

    def _child(self, metric: _Metric, *values: str) -> _Metric:
        """`metric.labels(*values)`, kept: `labels` checks its values and takes a lock on
        every call (~2 µs, nine times a relayed request). Label values are bounded (offered
        models, channel names, status classes), as prometheus-client's own children are."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def channel_attempt(
        self, channel: str, status: int | None, latency_ms: float | None,
        ttft_ms: float | None = None,
    ) -> None:  # fmt: skip
        """One upstream attempt: its status (None: no answer), duration and first token."""
        status_class = "error" if status is None else f"{status // 100}xx"
        self._child(self.channel_requests, channel, status_class).inc()
        if latency_ms is not None:
            self._child(self.channel_latency, channel).observe(latency_ms / 1000)
        if ttft_ms is not None:
            self._child(self.channel_ttft, channel).observe(ttft_ms / 1000)

    def channel_state(self, channel: str, state: str) -> None:
        for known in ("ok", "cooling", "disabled"):
            self._child(self.channel_health, channel, known).set(1 if known == state else 0)

    def relay_settled(self, model: str, outcome: Outcome, settled: Settlement) -> None:
        self._child(self.relay_requests, model, str(outcome.status)).inc()
        if outcome.latency_ms is not None:
            self._child(self.relay_latency, model).observe(outcome.latency_ms / 1000)
        if outcome.ttft_ms is not None:
            self._child(self.relay_ttft, model).observe(outcome.ttft_ms / 1000)
        if (used := outcome.usage) is not None:
            self._child(self.relay_tokens, model, "prompt").inc(used.prompt_tokens)
            self._child(self.relay_tokens, model, "completion").inc(used.completion_tokens)
        self._child(self.relay_quota_charged, model).inc(settled.charged)
        if settled.written_off:
            self._child(self.relay_written_off, model).inc(settled.written_off)

    def count_response(self, method: str, status: int) -> None:
        self._counts.responses[method, status] += 1

    def count_charge(self, outcome: str, quota: int = 0) -> None:
        """One usage charge: `charged` (debiting `quota`), `replayed`, or a refusal's kind."""
        self._counts.charges[outcome] += 1
        self._counts.quota_charged += quota

    def render(self) -> bytes:
        return generate_latest(self.registry)


_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _Tallies(Collector):
    """`quotaledger_http_responses_total{method, status}`, `quotaledger_charges_total{outcome}`
    and `quotaledger_quota_charged_total`, counted in plain tallies and turned into metrics
    only when scraped. Every answer and charge is counted, and a labelled prometheus-client
    `Counter` takes a lock per increment: ~1.5 µs, a few percent of the cheapest answers. The
    event loop is one thread, so a tally needs no lock."""

    def __init__(self) -> None:
        self.responses: Tally[tuple[str, int]] = Tally()
        self.charges: Tally[str] = Tally()
        self.quota_charged = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        responses = CounterMetricFamily(
            "quotaledger_http_responses", "HTTP responses", labels=["method", "status"]
        )
        for (method, status), count in sorted(self.responses.items()):
            responses.add_metric([method, str(status)], count)
        yield responses
        charges = CounterMetricFamily(
            "quotaledger_charges", "Usage charges by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(self.charges.items()):
            charges.add_metric([outcome], count)
        yield charges
        yield CounterMetricFamily(
            "quotaledger_quota_charged",
            "Quota debited by usage charges",
            value=self.quota_charged,
        )
