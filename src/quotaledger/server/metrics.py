"""Prometheus metrics (per process: with `--workers N` each worker counts its own)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._response_children: dict[tuple[str, int], Any] = {}
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

    def count_response(self, method: str, status: int) -> None:
        # `labels()` takes a lock and builds a key on every call: keep the children.
        child = self._response_children.get((method, status))
        if child is None:
            child = self.responses.labels(method, str(status))
            self._response_children[(method, status)] = child
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
