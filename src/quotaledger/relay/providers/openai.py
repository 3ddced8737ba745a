"""`openai`: OpenAI itself, or a server that speaks all of its API (Chat Completions,
embeddings and Responses)."""

from quotaledger.relay.providers.base import (
    CHAT,
    EMBEDDINGS,
    MODELS,
    RESPONSES,
    Headers,
    Probe,
    Provider,
)


def bearer(api_key: str) -> Headers:
    return (("authorization", f"Bearer {api_key}"),)


def chat_probe(model: str) -> dict[str, object]:
    return {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}


PATHS = {
    CHAT: "/chat/completions",
    EMBEDDINGS: "/embeddings",
    RESPONSES: "/responses",
    MODELS: "/models",
}

PROVIDER = Provider(
    name="openai",
    native=frozenset({CHAT, EMBEDDINGS, RESPONSES}),
    paths=PATHS,
    default_path="/v1",
    auth=bearer,
    probe=Probe(CHAT, chat_probe),
    forwarded_headers=frozenset({"openai-beta"}),
)
