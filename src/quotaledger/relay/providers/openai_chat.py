"""`openai-chat`: a server that speaks OpenAI's Chat Completions and embeddings only
(DeepSeek, Kimi, GLM, Qwen, OpenRouter, vLLM, Ollama...). Responses are converted."""

from quotaledger.relay.providers import openai
from quotaledger.relay.providers.base import CHAT, EMBEDDINGS, MODELS, Probe, Provider

PROVIDER = Provider(
    name="openai-chat",
    native=frozenset({CHAT, EMBEDDINGS}),
    paths={k: v for k, v in openai.PATHS.items() if k in (CHAT, EMBEDDINGS, MODELS)},
    default_path="/v1",
    auth=openai.bearer,
    probe=Probe(CHAT, openai.chat_probe),
)
