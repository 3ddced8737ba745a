"""new-api's group and model routes (SPEC §9), and `GET /api/user/token` refused with the
reason, against new-api's recorded answer shapes."""

from __future__ import annotations

from newapi_support import MODEL, price_models
from shape import assert_shaped_like
from starlette.testclient import TestClient

from quotaledger.billing import pricing
from quotaledger.relay import channels
from quotaledger.secret import Secret
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from support import issue_token, login

SECRET_KEY = "newapi-tests-secret-key-of-enough-length"


def test_groups_are_the_users_own_and_default_with_their_ratios(
    client: TestClient, make_user, database: Database
) -> None:
    pricing.set_group_ratio(database, "vip", "0.8")
    user = make_user("alice", group="vip")
    token = issue_token(client, "alice", user.password)

    answer = client.get("/api/user/self/groups", headers={"Authorization": token}).json()

    assert_shaped_like(answer, "user_self_groups")
    assert answer["data"]["vip"]["ratio"] == 0.8
    assert set(answer["data"]) == {"vip", "default"}


def test_models_are_the_ones_offered_by_price_and_enabled_channel(
    settings: Settings, make_user, database: Database
) -> None:
    from quotaledger.server.app import create_app

    price_models(database)  # gpt-test and fixed-test priced; only gpt-test has a channel
    cipher = channels.ChannelCipher(Secret(SECRET_KEY))
    spec = channels.ChannelSpec("main", "http://127.0.0.1:9", (MODEL,), Secret("sk-upstream"))
    channels.add_channel(database, cipher, spec)
    user = make_user("alice")
    configured = settings.with_overrides(secret_key=Secret(SECRET_KEY))
    with TestClient(create_app(configured, database)) as client:
        token = issue_token(client, "alice", user.password)
        for path in ("/api/user/models", "/api/user/self/models"):
            answer = client.get(path, headers={"Authorization": token}).json()
            assert_shaped_like(answer, "user_models")
            assert answer["data"] == [MODEL]


def test_get_user_token_is_refused_with_the_way_to_get_one(client: TestClient, make_user) -> None:
    user = make_user("alice")
    login(client, "alice", user.password)

    response = client.get("/api/user/token")

    assert response.status_code == 405
    assert "POST /api/user/token" in response.json()["message"]
    assert response.headers["allow"] == "POST"
