"""Schemathesis against our own `/openapi.json`: generated requests (valid and invalid)
never get a 5xx, and every response matches the documented statuses, headers and schemas.

(Driven operation by operation with hypothesis: schemathesis' pytest plugin does not run
under this pytest version.)"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from quotaledger.billing import pricing
from quotaledger.identity import accounts
from quotaledger.identity.bootstrap import prepare_database
from quotaledger.server.app import create_app
from quotaledger.settings import Settings


def test_no_5xx_and_responses_match_the_schema(tmp_path: Path) -> None:
    config = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", rate_limit_balance="off")
    database = prepare_database(config)
    accounts.create_account(database, "alice", "alice-password-123", quota=10**9)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    admin_token = accounts.replace_token(database, accounts.find_account(database, "admin").id)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(config, database))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9

    for operation in operations:
        _fuzz(operation, admin_token)
    database.dispose()


def _fuzz(operation: schemathesis.APIOperation, token: str) -> None:
    @given(data=st.data())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def check(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        case.call_and_validate(
            headers={**(case.headers or {}), "Authorization": token},
            # Our validation is stricter than a JSON schema can say (a top-up below one
            # quota unit, a username that does not exist): such refusals are 4xx by design.
            excluded_checks=[checks.positive_data_acceptance],
        )

    check()
