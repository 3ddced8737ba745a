"""Every `/v1` refusal in the client format's error shape, the HTTP layer's own included
(SPEC §14): OpenAI's under `/v1`, Anthropic's under `/v1/messages`, Google's under
`/v1beta`; the envelope stays under `/api`."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient


def _openai(answer: object) -> dict[str, object]:
    error = answer["error"]  # type: ignore[index]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_an_unknown_v1_path_is_404_in_openai_shape(client: TestClient) -> None:
    answer = client.get("/v1/nothing-here")

    assert answer.status_code == 404
    assert _openai(answer.json())["type"] == "invalid_request_error"


def test_a_wrong_method_on_a_v1_route_is_405_in_openai_shape(client: TestClient) -> None:
    answer = client.get("/v1/chat/completions")

    assert answer.status_code == 405
    assert _openai(answer.json())["message"] == "method not allowed"


@pytest.mark.parametrize("path", ["/v1/messages/nothing", "/v1/messages/batches"])
def test_an_unknown_messages_path_is_404_in_anthropic_shape(client: TestClient, path: str) -> None:
    answer = client.post(path, json={})

    assert answer.status_code == 404
    body = answer.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": "not_found_error", "message": "not found"}


def test_a_v1beta_refusal_is_in_googles_shape(client: TestClient) -> None:
    answer = client.get("/v1beta/no-such-thing")

    assert answer.status_code == 404
    assert answer.json() == {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}


def test_a_large_anonymous_relay_body_is_401_in_openai_shape_before_it_is_read(
    client: TestClient,
) -> None:
    body = b'{"model": "m", "messages": [], "pad": "' + b"x" * 100_000 + b'"}'

    answer = client.post(
        "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 401
    assert _openai(answer.json())["code"] == "invalid_api_key"


def test_a_large_messages_body_with_a_malformed_key_is_401_in_anthropic_shape(
    client: TestClient,
) -> None:
    answer = client.post(
        "/v1/messages",
        content=b"{" + b" " * 100_000 + b"}",
        headers={"x-api-key": "not-a-key", "Content-Type": "application/json"},
    )

    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"


def test_api_refusals_stay_in_the_envelope(client: TestClient) -> None:
    answer = client.get("/api/nothing-here")

    assert answer.status_code == 404
    assert answer.json() == {"success": False, "message": "not found", "data": None}
