"""The upstream client's idle timeout (`server/upstream.py`'s `_IdleWatch`): a body that goes
silent ends in `TimeoutError` in the read waiting on it; a body that keeps coming does not;
a reply read to its end leaves the watch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from quotaledger.relay.upstream import Reply, Target, Upstream

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _target(fake_upstream: Any) -> Target:
    return Target("fake", fake_upstream.base_url + "/v1", (("authorization", "Bearer x"),))


def _headers(**scenario: Any) -> list[tuple[str, str]]:
    return [("content-type", "application/json"), ("X-Fake-Scenario", json.dumps(scenario))]


async def _open(upstream: Upstream, fake_upstream: Any, **scenario: Any) -> Reply:
    """A streamed chat on the fake upstream, playing `scenario`."""
    return await upstream.open(
        _target(fake_upstream), fake_upstream.base_url + "/v1/chat/completions",
        _headers(**scenario),
        json.dumps(BODY).encode(),
    )  # fmt: skip


async def test_a_body_silent_past_the_idle_timeout_raises_timeout_error(
    fake_upstream: Any,
) -> None:
    upstream = Upstream(idle_timeout=0.4)
    try:
        reply = await _open(upstream, fake_upstream, stall_after=2)
        received = b""
        with pytest.raises(TimeoutError):
            async for chunk in reply.chunks():
                received += chunk
        reply.close()
        assert received.count(b"\n\n") == 2  # the two events before the silence
    finally:
        await upstream.close()


async def test_a_body_whose_events_keep_coming_is_read_to_its_end_and_leaves_the_watch(
    fake_upstream: Any,
) -> None:
    # 0.3 s of events in all, each 0.3 / ~13 s apart: longer than the idle timeout overall,
    # never without an event for as long (the reader says when it took one, as the relay's
    # stream does).
    upstream = Upstream(idle_timeout=0.2)
    try:
        reply = await _open(upstream, fake_upstream, duration=0.3)
        received = b""
        async for chunk in reply.chunks():
            received += chunk
            reply.progressed()
        assert received.endswith(b"data: [DONE]\n\n")
        reply.release()
        assert upstream._idle.replies == set()
    finally:
        await upstream.close()


async def test_bytes_that_never_make_an_event_time_out(fake_upstream: Any) -> None:
    # The same body read without taking an event from it (as the relay reads a trickle, a
    # byte at a time that never completes one): idle, whatever the bytes.
    upstream = Upstream(idle_timeout=0.2)
    try:
        reply = await _open(upstream, fake_upstream, duration=2.0)
        received = b""
        with pytest.raises(TimeoutError):
            async for chunk in reply.chunks():
                received += chunk
        assert received  # bytes did arrive before the timeout
        assert not received.endswith(b"data: [DONE]\n\n")
        reply.close()
    finally:
        await upstream.close()
