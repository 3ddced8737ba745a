"""SPEC §12's channel health on the relay end to end: a real `quotaledger serve` in front of
the example fake upstream, each channel with an upstream key of its own so that the requests
each one got are counted. A dead credential disables a channel at once (and the request
moves on to the next channel); transient 5xx cool it down after three failures, never one;
probes re-enable automatically disabled and cooling channels, never one the operator
disabled; `channel list` shows what happened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest
from relay_live import (
    MESSAGES,
    SECRET_KEY,
    Customer,
    Relay,
    customer,
    relay_server,
    sdk_client,
    wait_for,
)

from quotaledger.billing import pricing
from quotaledger.relay import channels
from quotaledger.relay.health import COOLING, DISABLED, OK, Health, HealthBook
from quotaledger.secret import Secret
from support import run_cli

CHAT = "/v1/chat/completions"
# Each test's model, served by a first channel (priority 10) and a spare one (priority 0).
PAIRS = {
    "h-dead": ("dead", "dead-spare"),
    "h-flaky": ("flaky", "flaky-spare"),
    "h-probed": ("probed-dead", "probed-spare"),
    "h-cooled": ("probed-cool", "cooled-spare"),
    "h-shut": ("shut", "shut-spare"),
    "h-none": ("none-first", "none-second"),
}


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    default = {"QUOTALEDGER_CHANNEL_FAILURES_TO_COOL": "3"}
    for running in relay_server(tmp_path_factory, instances=0, env=default):
        base_url = channels.get_channel(running.database, "primary").base_url
        cipher = channels.ChannelCipher(Secret(SECRET_KEY))
        for model, names in PAIRS.items():
            price = pricing.make_price(model, input_usd_per_mtok="1", output_usd_per_mtok="2")
            pricing.set_price(running.database, price)
            for name, priority in zip(names, (10, 0), strict=True):
                spec = channels.ChannelSpec(name, base_url, (model,), Secret(key_of(name)),
                                            priority=priority)  # fmt: skip
                channels.add_channel(running.database, cipher, spec)
        running.start_instance()
        yield running


def key_of(channel: str) -> str:
    return f"sk-upstream-{channel}-0123456789"


def calls_to(relay: Relay, channel: str) -> int:
    """The requests the fake upstream got with `channel`'s key."""
    wanted = f"Bearer {key_of(channel)}"
    return sum(1 for r in list(relay.upstream.requests) if r.header("authorization") == wanted)


def ask(relay: Relay, who: Customer, model: str) -> Any:
    client = openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=0)
    return sdk_client(client).chat.completions.create(model=model, messages=MESSAGES)


def health_of(relay: Relay, channel: str) -> Health:
    return HealthBook(relay.database).get(channels.get_channel(relay.database, channel).id)


def listed(relay: Relay) -> dict[str, Any]:
    """`channel list --json`, by channel name."""
    done = run_cli("channel", "list", "--json", database_url=relay.database.url,
                   env={"QUOTALEDGER_SECRET_KEY": SECRET_KEY})  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {c["name"]: c for c in json.loads(done.stdout)}


def test_a_channel_whose_credential_is_refused_is_disabled_and_gets_no_more_requests(
    relay: Relay,
) -> None:
    who = customer(relay)
    relay.upstream.script(path=CHAT, status=401, times=1)
    # The channel's credential is dead, not the client's: the spare answers at once.
    assert ask(relay, who, "h-dead").choices[0].message.content
    assert health_of(relay, "dead").state == DISABLED
    for _ in range(5):
        ask(relay, who, "h-dead")
    assert (calls_to(relay, "dead"), calls_to(relay, "dead-spare")) == (1, 6)

    def stats_flushed() -> bool:  # every instance adds its tallies every 10 s
        return listed(relay)["dead-spare"]["success_rate_1h"] is not None

    wait_for(stats_flushed, 30, "the channel stats")
    shown = listed(relay)
    assert shown["dead"]["health"] == "disabled"
    assert shown["dead"]["health_reason"] == "credential refused (HTTP 401)"
    assert shown["dead"]["last_error"] == "credential refused (HTTP 401)"
    assert (shown["dead"]["requests_1h"], shown["dead"]["success_rate_1h"]) == (1, 0.0)
    assert (shown["dead-spare"]["requests_1h"], shown["dead-spare"]["success_rate_1h"]) == (6, 1.0)
    assert shown["dead-spare"]["p50_latency_ms_1h"] is not None
    assert shown["dead-spare"]["last_success_at_ms"] is not None
    assert shown["dead"]["status"] == "enabled"  # the operator's word is untouched
    table = run_cli("channel", "list", database_url=relay.database.url,
                    env={"QUOTALEDGER_SECRET_KEY": SECRET_KEY, "COLUMNS": "300"})  # fmt: skip
    assert "disabled: credential refused (HTTP 401)" in table.stdout
    metrics = httpx.get(relay.server.base_url + "/metrics").text
    assert 'quotaledger_channel_requests_total{channel="dead",status_class="4xx"} 1.0' in metrics
    assert 'quotaledger_channel_health{channel="dead",state="disabled"} 1.0' in metrics


def test_transient_failures_cool_a_channel_after_three_never_after_one(relay: Relay) -> None:
    who = customer(relay)
    for failures in (1, 2):
        relay.upstream.script(path=CHAT, status=500, times=1)
        ask(relay, who, "h-flaky")  # the spare answers
        flaky = health_of(relay, "flaky")
        assert (flaky.state, len(flaky.failures)) == (OK, failures)
        assert flaky.last_error == "HTTP 500"
    relay.upstream.script(path=CHAT, status=500, times=1)
    ask(relay, who, "h-flaky")
    assert health_of(relay, "flaky").state == COOLING
    for _ in range(3):
        ask(relay, who, "h-flaky")
    assert (calls_to(relay, "flaky"), calls_to(relay, "flaky-spare")) == (3, 6)


def test_when_every_channel_is_out_of_rotation_nothing_goes_upstream(relay: Relay) -> None:
    who = customer(relay)
    book = HealthBook(relay.database)
    for name in PAIRS["h-none"]:  # disabled, their probes years away
        channel_id = channels.get_channel(relay.database, name).id
        book.change(channel_id, lambda h: replace(h, state=DISABLED, probe_at_ms=2**50))

    def refused() -> bool:  # each instance reads the shared health every 2 s
        try:
            ask(relay, who, "h-none")
        except openai.APIStatusError as exc:
            return exc.status_code == 503
        return False

    wait_for(refused, 10, "the channels out of rotation")
    before = len(relay.upstream.requests)
    with pytest.raises(openai.InternalServerError) as caught:
        ask(relay, who, "h-none")
    assert "disabled or cooling down" in caught.value.message
    assert len(relay.upstream.requests) == before


def test_probes_re_enable_disabled_and_cooling_channels_never_an_operator_disabled_one(
    relay: Relay,
) -> None:
    who = customer(relay)
    relay.upstream.script(path=CHAT, status=401, times=1)
    ask(relay, who, "h-probed")
    for _ in range(3):
        relay.upstream.script(path=CHAT, status=503, times=1)
        ask(relay, who, "h-cooled")
    relay.upstream.script(path=CHAT, status=403, times=1)
    ask(relay, who, "h-shut")
    run_cli("channel", "disable", "shut", database_url=relay.database.url)
    states = {name: health_of(relay, name).state for name in ("probed-dead", "probed-cool", "shut")}
    assert states == {"probed-dead": DISABLED, "probed-cool": COOLING, "shut": DISABLED}
    shut_calls = calls_to(relay, "shut")

    book = HealthBook(relay.database)
    for name in ("probed-dead", "probed-cool", "shut"):  # as if their next probe were due
        channel_id = channels.get_channel(relay.database, name).id
        book.change(channel_id, lambda h: replace(h, probe_at_ms=0))

    def healed() -> bool:  # a background round runs every 10 s
        return all(health_of(relay, n).state == OK for n in ("probed-dead", "probed-cool"))

    wait_for(healed, 30, "the probes")
    assert health_of(relay, "shut").state == DISABLED  # never probed: the operator's
    assert calls_to(relay, "shut") == shut_calls
    assert listed(relay)["shut"]["status"] == "disabled"
    # Back in rotation: the next requests reach them again (once each instance has read it).
    before = calls_to(relay, "probed-dead")
    wait_for(lambda: ask(relay, who, "h-probed") and calls_to(relay, "probed-dead") > before,
             10, "the channel back in rotation")  # fmt: skip
