"""new-api's user API (SPEC §9) against a live relay: what the official `openai` SDK spends
through `quotaledger serve` shows in `/api/log/self`, `/api/log/self/stat`, the key's own
balance (`/api/usage/token`) and OpenAI's legacy billing routes; a key made by
`POST /api/token/` relays at once."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from relay_live import MESSAGES, MODEL, Relay, customer, relay_server, settled

from support import token_from


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    yield from relay_server(tmp_path_factory)


def _username(relay: Relay, user_id: int) -> str:
    from quotaledger.identity import accounts

    with relay.database.read() as connection:
        return accounts.get_account_in(connection, user_id).username


@pytest.mark.slow
def test_a_streamed_relay_request_shows_in_the_log_and_in_the_keys_balance(relay: Relay) -> None:
    who = customer(relay, quota=5_000_000, period="day", period_quota=1_000_000)
    with openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=0) as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert chunks
    row = settled(relay, who, 1)[0]
    token = token_from(relay.server.base_url, _username(relay, who.user_id), "password-123")
    account = {"Authorization": token}
    key = {"Authorization": f"Bearer {who.key}"}

    with httpx.Client(base_url=relay.server.base_url, timeout=30) as http:
        logged = http.get("/api/log/self?p=1&page_size=10", headers=account).json()["data"]
        stat = http.get("/api/log/self/stat?token_name=laptop", headers=account).json()["data"]
        own = http.get("/api/usage/token", headers=key).json()["data"]
        billing = http.get("/v1/dashboard/billing/usage", headers=key).json()

    item = logged["items"][0]
    assert (item["token_name"], item["model_name"], item["is_stream"]) == ("laptop", MODEL, True)
    assert item["quota"] == row["quota"] > 0 and item["channel_name"] == "primary"
    assert item["usage_source"] == "upstream" and item["ttft_ms"] is not None
    assert (stat["quota"], stat["rpm"]) == (row["quota"], 1)
    assert own["total_used"] == row["quota"] and own["period_used"] == row["quota"]
    assert own["total_available"] == 1_000_000 - row["quota"]
    assert billing["total_usage"] == pytest.approx(row["quota"] / 500_000 * 100)


@pytest.mark.slow
def test_a_key_made_by_post_api_token_relays_at_once(relay: Relay) -> None:
    who = customer(relay)
    token = token_from(relay.server.base_url, _username(relay, who.user_id), "password-123")
    with httpx.Client(base_url=relay.server.base_url, timeout=30) as http:
        made = http.post(
            "/api/token/",
            json={"name": "script", "remain_quota": 100_000, "unlimited_quota": False,
                  "expired_time": -1, "model_limits_enabled": True, "model_limits": MODEL},
            headers={"Authorization": token},
        ).json()["data"]  # fmt: skip

    with openai.OpenAI(api_key=made["key"], base_url=relay.v1, max_retries=0) as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(openai.PermissionDeniedError):
            client.embeddings.create(model="embed-test", input="hi")
    assert answer.choices[0].message.content
