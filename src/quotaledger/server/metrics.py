"""Prometheus metrics (per process: with `--workers N` each worker counts its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.responses = Counter(
            "quotaledger_http_responses",
            "HTTP responses",
            ["method", "status"],
            registry=self.registry,
        )
        self.charges = Counter(
            "quotaledger_charges", "Usage charges by outcome", ["outcome"], registry=self.registry
        )
        self.quota_charged = Counter(
            "quotaledger_quota_charged", "Quota debited by usage charges", registry=self.registry
        )
        self.security_events = Counter(
            "quotaledger_security_events",
            "Login failures, tokens issued, lockouts",
            ["event"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
