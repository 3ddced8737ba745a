"""SPEC §12's channel health rules, as pure transitions with a clock given by hand."""

from __future__ import annotations

import pytest

from quotaledger.relay.health import (
    COOLING,
    DISABLED,
    FATAL,
    FINE,
    OK,
    TRANSIENT,
    Health,
    Policy,
    Verdict,
    after_failure,
    after_probe,
    after_success,
    balance_back,
    classify,
    disabled_for_balance,
)

POLICY = Policy()
S = 1000  # ms


@pytest.mark.parametrize(
    ("status", "detail", "error", "kind"),
    [
        (401, "", None, FATAL),
        (403, "", None, FATAL),
        (402, "", None, FATAL),
        (429, '{"error": {"code": "insufficient_quota"}}', None, FATAL),
        (400, "Your credit balance is too low to access the Anthropic API", None, FATAL),
        (429, "slow down", None, TRANSIENT),
        (500, "", None, TRANSIENT),
        (503, "", None, TRANSIENT),
        (529, "overloaded", None, TRANSIENT),
        (None, "", "timeout", TRANSIENT),
        (None, "", "connect error", TRANSIENT),
        (400, "bad request", None, FINE),
        (404, "no such model", None, FINE),
        (413, "", None, FINE),
    ],
)
def test_failures_are_classified(status: int | None, detail: str, error: str | None,
                                 kind: str) -> None:  # fmt: skip
    assert classify(status, detail, error).kind == kind


def test_the_reason_says_what_happened() -> None:
    assert classify(401).reason == "credential refused (HTTP 401)"
    assert classify(402).reason == "upstream out of credit (HTTP 402)"
    assert classify(None, error="timeout").reason == "timeout"


def fail(health: Health, at: int, verdict: Verdict | None = None) -> Health:
    return after_failure(health, verdict or classify(500), at, POLICY)


def test_one_transient_failure_never_cools_a_channel() -> None:
    health = fail(Health(), 0)
    assert health.state == OK and health.usable(0)
    assert health.last_error == "HTTP 500"


def test_three_transient_failures_in_sixty_seconds_cool_it_for_thirty() -> None:
    health = fail(fail(fail(Health(), 0), 20 * S), 40 * S)
    assert (health.state, health.until_ms, health.level) == (COOLING, 70 * S, 1)
    assert not health.usable(70 * S - 1)
    assert health.usable(70 * S)  # half-open once the cool-down ends
    assert health.probe_due(70 * S) and not health.probe_due(70 * S - 1)


def test_failures_further_apart_than_the_window_do_not_add_up() -> None:
    health = fail(fail(fail(Health(), 0), 30 * S), 61 * S)
    assert health.state == OK
    assert health.failures == (30 * S, 61 * S)


def test_a_success_between_failures_breaks_the_streak() -> None:
    health = fail(after_success(fail(fail(Health(), 0), S), 2 * S), 3 * S)
    assert health.state == OK and len(health.failures) == 1


def test_a_failure_after_the_cool_down_cools_again_at_once_and_twice_as_long() -> None:
    cooled = fail(fail(fail(Health(), 0), S), 2 * S)
    again = fail(cooled, 32 * S)
    assert (again.state, again.level, again.until_ms) == (COOLING, 2, 92 * S)
    third = fail(again, 92 * S)
    assert third.until_ms - 92 * S == 120 * S


def test_cool_downs_stop_growing_at_thirty_minutes() -> None:
    health = Health(state=COOLING, level=20, until_ms=0)
    assert fail(health, 0).until_ms == 30 * 60 * S


def test_failures_of_requests_already_in_flight_do_not_extend_a_cool_down() -> None:
    cooled = fail(fail(fail(Health(), 0), S), 2 * S)
    assert fail(cooled, 3 * S).until_ms == cooled.until_ms


def test_a_success_heals_a_cooling_channel() -> None:
    cooled = fail(fail(fail(Health(), 0), S), 2 * S)
    healed = after_success(cooled, 40 * S)
    assert (healed.state, healed.level, healed.last_success_at) == (OK, 0, 40 * S)
    assert healed.last_error == "HTTP 500"  # kept for `channel list`


def test_a_dead_credential_disables_at_once_and_is_probed_every_five_minutes() -> None:
    health = fail(Health(), 0, classify(401))
    assert (health.state, health.reason, health.cause) == (
        DISABLED, "credential refused (HTTP 401)", "failure",
    )  # fmt: skip
    assert not health.usable(10**12)  # never by time alone
    assert health.probe_due(300 * S) and not health.probe_due(300 * S - 1)


def test_a_failed_probe_keeps_a_disabled_channel_disabled_for_its_reason() -> None:
    disabled = fail(Health(), 0, classify(402))
    for verdict in (classify(402), classify(500)):
        probed = after_probe(disabled, verdict, 300 * S, POLICY)
        assert probed.state == DISABLED and probed.probe_at_ms == 600 * S
    assert after_probe(disabled, classify(500), 300 * S, POLICY).reason == disabled.reason


def test_a_successful_probe_re_enables_a_disabled_or_cooling_channel() -> None:
    disabled = fail(Health(), 0, classify(401))
    assert after_probe(disabled, None, 300 * S, POLICY).state == OK
    cooled = fail(fail(fail(Health(), 0), S), 2 * S)
    assert after_probe(cooled, None, 32 * S, POLICY).state == OK


def test_a_failed_probe_of_a_cooling_channel_cools_it_longer() -> None:
    cooled = fail(fail(fail(Health(), 0), S), 2 * S)
    probed = after_probe(cooled, classify(None, error="timeout"), 32 * S, POLICY)
    assert (probed.state, probed.level, probed.until_ms) == (COOLING, 2, 92 * S)
    fatal = after_probe(cooled, classify(401), 32 * S, POLICY)
    assert fatal.state == DISABLED


def test_a_fine_verdict_changes_nothing() -> None:
    health = fail(Health(), 0)
    assert fail(health, S, classify(400)) == health


def test_an_empty_balance_disables_and_a_refilled_one_re_enables() -> None:
    empty = disabled_for_balance(Health(), "upstream balance $0.00", 0, POLICY)
    assert (empty.state, empty.cause) == (DISABLED, "balance")
    assert balance_back(empty, S).state == OK


def test_a_refilled_balance_does_not_re_enable_a_channel_disabled_for_a_dead_key() -> None:
    dead = fail(Health(), 0, classify(401))
    assert disabled_for_balance(dead, "upstream balance $0.00", S, POLICY) == dead
    assert balance_back(dead, S) == dead
