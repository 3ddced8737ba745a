"""Bodies no endpoint takes, refused where every route gets them (issue 25 item 5, issue 26
item 3): JSON nested too deep (a 1,000-deep body was a 500 from a RecursionError in the
relay's prompt counter), bytes that are not UTF-8 (FastAPI's undocumented 400) and what
FastAPI's parser fails on: 422 on the API as docs/api.md says, 400 on the relay."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from quotaledger.server.plain_text import MAX_JSON_DEPTH, too_deep
from support import issue_token

JSON = {"Content-Type": "application/json"}
DEEP = b"[" * 1_000 + b"]" * 1_000


def nested(depth: int) -> bytes:
    return b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def alice(client: TestClient, make_user: Any) -> dict[str, str]:
    user = make_user("alice")
    return {"Authorization": issue_token(client, "alice", user.password), **JSON}


@pytest.mark.parametrize(
    "path", ["/api/usage", "/api/user/alerts/urls", "/api/token/", "/api/user/topup"]
)
def test_a_body_nested_1000_deep_is_422_on_every_api_route(
    client: TestClient, alice: dict[str, str], path: str
) -> None:
    response = client.post(path, content=b'{"url": ' + DEEP + b"}", headers=alice)

    assert response.status_code == 422, response.text
    assert response.json()["message"] == (
        f"body: invalid JSON (nested deeper than {MAX_JSON_DEPTH} levels)"
    )


def test_a_relay_body_nested_1000_deep_is_400_in_openais_shape(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", content=nested(1_000), headers=JSON)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_body_at_the_depth_limit_is_not_refused_for_its_depth(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", content=nested(MAX_JSON_DEPTH - 1),
                           headers=JSON)  # fmt: skip

    assert response.status_code == 401  # on to the key check


def test_brackets_inside_strings_do_not_count() -> None:
    text = b'{"content": "' + b"[{" * 5_000 + b'\\"]"}'

    assert not too_deep(text, MAX_JSON_DEPTH)
    assert too_deep(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)
    assert not too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, MAX_JSON_DEPTH)
    assert not too_deep(b"[[]]" * 10_000, MAX_JSON_DEPTH)  # many brackets, shallow


def test_escaped_quotes_and_backslashes_are_read_as_json_reads_them() -> None:
    deep = b"[" * 200 + b"]" * 200
    inside = b'{"a": "x\\"' + deep + b'"}'  # an escaped quote: still in the string
    after = b'{"a": "x\\\\", "b": ' + deep + b"}"  # an escaped backslash: the string ends

    assert not too_deep(inside, MAX_JSON_DEPTH)
    assert too_deep(after, MAX_JSON_DEPTH)


@pytest.mark.parametrize("path", ["/api/user/alerts/urls", "/api/token/", "/api/usage"])
def test_a_body_that_is_not_utf8_is_422_on_framework_and_front_door_routes(
    client: TestClient, alice: dict[str, str], path: str
) -> None:
    response = client.post(path, content=b'{"url": "\xff\xfe", "name": "x"}', headers=alice)

    assert response.status_code == 422, response.text
    assert response.json()["message"] == "body: invalid JSON (not UTF-8)"


def test_a_body_fastapis_parser_fails_on_is_422(client: TestClient, alice: dict[str, str]) -> None:
    huge_integer = b'{"url": ' + b"9" * 5_000 + b"}"  # past Python's int-from-text limit

    response = client.post("/api/user/alerts/urls", content=huge_integer, headers=alice)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("body: invalid JSON")
