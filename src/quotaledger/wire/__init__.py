"""The relay's wire formats, with no server and no database (SPEC §8, §8a).

- `sse`: an incremental server-sent-events parser that keeps each event's raw bytes.
- `counts`: token counts as read from a provider's JSON, malformed ones told apart.
- `counting`: local token counting, offline (prompt estimates, delivered text).
- `openai_chat`: chat completions and embeddings: upstream body, usage, `ChatStream`.
- `anthropic_messages`: Messages: upstream body, usage, `MessagesStream`, count_tokens.
- `openai_responses`: Responses: upstream body, usage, `ResponsesStream`.
- `gemini`: Gemini's generateContent: upstream body, caps, usage, `GeminiStream` (SSE or one
  JSON array), countTokens; `gemini_embeddings`, `gemini_models`: its embeddings, its list.
- `errors`: the relay's own errors in OpenAI's, Anthropic's and Google's envelopes, and
  stream errors.

Each stream tracker has the same shape: `relay(event) -> bytes` for the client,
`finish() -> bytes` once upstream's body ended, `fail(message) -> bytes` on a failure of
ours (idle timeout), `usage() -> TokenUsage` to settle, and `done` / `delivered`. Every
format turns its provider's usage report into that one `quotaledger.token_usage.TokenUsage`.
"""
