"""Property-based tests of the ledger: any sequence of grants, charges, replays,
insufficient charges and token changes keeps the SPEC §1 invariant, on SQLite and on
PostgreSQL, and a replay never charges twice."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from quotaledger.billing import ledger, pricing
from quotaledger.errors import AuthenticationFailed, IdempotencyConflict, InsufficientQuota
from quotaledger.identity import accounts
from quotaledger.store.database import Database
from support import check_invariant

_names = itertools.count()


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, database: Database) -> None:
        super().__init__()
        self.database = database
        self.name = f"user{next(_names)}"
        accounts.create_account(database, self.name, "password-123")
        self.expected_quota = 0
        self.answers: dict[str, tuple[int, int, int]] = {}
        self.token: str | None = None  # request_id -> payload, first answer

    @rule(amount=st.integers(min_value=1, max_value=5_000_000))
    def grant(self, amount: int) -> None:
        assert ledger.top_up(self.database, self.name, amount) == self.expected_quota + amount
        self.expected_quota += amount

    @rule(
        request_id=st.sampled_from([f"r{i}" for i in range(8)]),
        model=st.sampled_from(["call", "tokens"]),
        prompt=st.integers(min_value=0, max_value=2_000_000),
    )
    def charge(self, request_id: str, model: str, prompt: int) -> None:
        request = ledger.UsageRequest(self.name, model, request_id, prompt_tokens=prompt)
        previous = self.answers.get(request_id)
        try:
            result = ledger.charge(self.database, request)
        except InsufficientQuota as exc:
            assert previous is None
            assert exc.cost > self.expected_quota
            return
        except IdempotencyConflict:
            assert previous is not None and previous[0] != hash((model, prompt))
            return
        if previous is not None:
            assert previous[0] == hash((model, prompt))
            assert result.replayed
            assert (result.quota_charged, result.quota_remaining) == previous[1:]
            return
        assert not result.replayed
        self.expected_quota -= result.quota_charged
        assert result.quota_remaining == self.expected_quota
        self.answers[request_id] = (
            hash((model, prompt)),
            result.quota_charged,
            result.quota_remaining,
        )

    @rule()
    def regenerate_token(self) -> None:
        account = accounts.find_account(self.database, self.name)
        token = accounts.replace_token(self.database, account.id)
        assert accounts.account_for_token(self.database, token).quota == self.expected_quota
        if self.token is not None:  # the one it replaced is refused from now on
            with pytest.raises(AuthenticationFailed):
                accounts.account_for_token(self.database, self.token)
        self.token = token

    @invariant()
    def balance_is_as_expected(self) -> None:
        assert accounts.find_account(self.database, self.name).quota == self.expected_quota

    @invariant()
    def ledger_invariant_holds(self) -> None:
        check_invariant(self.database)


@pytest.fixture
def priced_database(database: Database) -> Database:
    pricing.set_price(database, pricing.make_price("call", per_call_usd="0.37"))
    pricing.set_price(
        database,
        pricing.make_price("tokens", input_usd_per_mtok="3.3", output_usd_per_mtok="15"),
    )
    return database


def test_any_sequence_of_ledger_operations_keeps_the_invariant(priced_database: Database) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(priced_database),
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
