"""Gemini's embeddings on the wire (SPEC §11.1): `models/{model}:embedContent` (one
`content`) and `:batchEmbedContents` (`requests`, each with its `content`; what google-genai's
`embed_content` sends), served by gemini channels only.

Google's embedding answers mostly carry no usage: the input is then counted here
(`counting.gemini_contents_tokens`) and charged at the model's input price.
"""

from __future__ import annotations

from typing import Any

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import counting
from quotaledger.wire.counting import local_usage
from quotaledger.wire.counts import count
from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.gemini import IN_URL, PreparedBody


def _content(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("parts"), list):
        raise InvalidRequest(f"{param} is required (a Content with parts)", param)
    return value


def prepare_embed(body: Any) -> PreparedBody:
    """Check an embedContent request (one `content`)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    _content(body.get("content"), "content")
    return PreparedBody({k: v for k, v in body.items() if k not in IN_URL})


def _requests(body: Any) -> list[dict[str, Any]]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("requests is required (a non-empty array)", "requests")
    for index, request in enumerate(requests):
        if not isinstance(request, dict):
            raise InvalidRequest("requests must hold objects", f"requests[{index}]")
        _content(request.get("content"), f"requests[{index}].content")
    return requests


def prepare_batch_embed(body: Any) -> PreparedBody:
    """Check a batchEmbedContents request (`requests`, each with its `content`)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    _requests(body)
    return PreparedBody({k: v for k, v in body.items() if k not in IN_URL})


def embed_tokens(body: dict[str, Any]) -> int:
    return counting.gemini_contents_tokens([body.get("content")])


def batch_embed_tokens(body: dict[str, Any]) -> int:
    requests = body.get("requests")
    requests = requests if isinstance(requests, list) else []
    return counting.gemini_contents_tokens(
        [r.get("content") for r in requests if isinstance(r, dict)]
    )


def batch_for_model(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A batch for the channel's `model`: each request names the URL's model (Google
    checks that they agree), so every request runs on the model the client was billed for."""
    named = f"models/{model}"
    requests = [{**r, "model": named} for r in body.get("requests") or () if isinstance(r, dict)]
    return {**body, "model": model, "requests": requests}


def embed_usage(answer: Any, *, input_tokens: int) -> TokenUsage:
    """An embedding answer's usage: its `usageMetadata.promptTokenCount` where Google sends
    one, else the input counted here (embedding answers mostly carry no usage)."""
    metadata = answer.get("usageMetadata") if isinstance(answer, dict) else None
    prompt = count(metadata.get("promptTokenCount")) if isinstance(metadata, dict) else None
    if prompt:
        return TokenUsage(input=prompt)
    return local_usage(input_tokens, ())
