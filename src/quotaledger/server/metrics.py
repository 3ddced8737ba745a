"""Prometheus metrics (per process: with `--workers N` each worker counts its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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


class CountResponses:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.responses.labels(scope["method"], str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)
