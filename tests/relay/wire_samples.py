# ruff: noqa: E501 - recorded wire samples keep one event per line, as on the wire
"""Answers in the providers' real wire formats, written after their public API references
(OpenAI chat completions / streaming / Responses streaming events; Anthropic Messages
streaming), for the parsers' tests."""

from __future__ import annotations

# OpenAI chat, streamed with stream_options.include_usage: the reference's chunks, then the
# usage chunk with `choices: []`, then [DONE].
OPENAI_CHAT_STREAM = (
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,'
    b'"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,'
    b'"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,'
    b'"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,'
    b'"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,'
    b'"delta":{"content":" world!"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,'
    b'"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,'
    b'"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,'
    b'"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":'
    b'{"prompt_tokens":1200,"completion_tokens":17,"total_tokens":1217,"prompt_tokens_details":'
    b'{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":5,'
    b'"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n'
    b"data: [DONE]\n\n"
)

# The same answer from an upstream that sends no usage chunk.
OPENAI_CHAT_STREAM_NO_USAGE = b"\n\n".join(
    block for block in OPENAI_CHAT_STREAM.split(b"\n\n") if b'"choices":[]' not in block
)

# A tool call streamed as deltas (the reference's function-calling stream).
OPENAI_CHAT_TOOL_STREAM = (
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,'
    b'"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},'
    b'"logprobs":null,"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"location\\":"}}]},'
    b'"logprobs":null,"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"Paris\\"}"}}]},'
    b'"logprobs":null,"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}\n\n'
    b"data: [DONE]\n\n"
)

OPENAI_CHAT_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The image shows a wooden boardwalk path.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}

# Anthropic Messages, streamed (the reference's "basic streaming request"), with the cache
# fields and the cumulative message_delta usage the API sends today.
ANTHROPIC_STREAM = (
    b"event: message_start\n"
    b'data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",'
    b' "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6",'
    b' "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25,'
    b' "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 30000,'
    b' "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500},'
    b' "output_tokens": 1, "service_tier": "standard"}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}\n\n'
    b"event: ping\n"
    b'data: {"type": "ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type": "content_block_stop", "index": 0}\n\n'
    b"event: message_delta\n"
    b'data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null},'
    b' "usage": {"input_tokens": 25, "cache_creation_input_tokens": 2000,'
    b' "cache_read_input_tokens": 30000, "output_tokens": 15}}\n\n'
    b"event: message_stop\n"
    b'data: {"type": "message_stop"}\n\n'
)


def anthropic_stream(start_usage: str, delta_usage: str, text: str = "Hello!") -> bytes:
    """A short Messages stream with the usage objects given (JSON text)."""
    return (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant",'
        b'"content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":'
        + start_usage.encode()
        + b"}}\n\n"
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'
        + text.encode()
        + b'"}}\n\n'
        b"event: content_block_stop\n"
        b'data: {"type":"content_block_stop","index":0}\n\n'
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":'
        + delta_usage.encode()
        + b"}\n\n"
        b"event: message_stop\n"
        b'data: {"type":"message_stop"}\n\n'
    )


ANTHROPIC_TOOL_AND_THINKING_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_02","type":"message","role":"assistant",'
    b'"content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":472,"output_tokens":2}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"I need the weather."}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
    b'"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\": \\"San Fra"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\\"}"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":1}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"output_tokens":89,"output_tokens_details":{"thinking_tokens":40}}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)

ANTHROPIC_ERROR_EVENT = (
    b"event: error\n"
    b'data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
)

ANTHROPIC_MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 2051,
        "cache_read_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 51, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 503,
    },
}

# OpenAI Responses, streamed (the reference's streaming events, in order).
_RESPONSE_HEAD = (
    b'"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response",'
    b'"created_at":1741290958,"model":"gpt-4.1-2025-04-14","error":null,"incomplete_details":null,'
    b'"instructions":null,"max_output_tokens":null,"parallel_tool_calls":true,'
    b'"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,'
    b'"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],'
    b'"top_p":1.0,"truncation":"disabled","user":null,"metadata":{}'
)
_ITEM_ID = b"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654"
RESPONSES_STREAM = (
    b"event: response.created\n"
    b'data: {"type":"response.created","sequence_number":0,"response":{'
    + _RESPONSE_HEAD
    + b',"status":"in_progress","output":[],"usage":null}}\n\n'
    b"event: response.in_progress\n"
    b'data: {"type":"response.in_progress","sequence_number":1,"response":{'
    + _RESPONSE_HEAD
    + b',"status":"in_progress","output":[],"usage":null}}\n\n'
    b"event: response.output_item.added\n"
    b'data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":'
    b'{"id":"'
    + _ITEM_ID
    + b'","type":"message","status":"in_progress","role":"assistant","content":[]}}\n\n'
    b"event: response.content_part.added\n"
    b'data: {"type":"response.content_part.added","sequence_number":3,"item_id":"'
    + _ITEM_ID
    + b'","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}\n\n'
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"'
    + _ITEM_ID
    + b'","output_index":0,"content_index":0,"delta":"Hi","logprobs":[]}\n\n'
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","sequence_number":5,"item_id":"'
    + _ITEM_ID
    + b'","output_index":0,"content_index":0,"delta":" there!","logprobs":[]}\n\n'
    b"event: response.output_text.done\n"
    b'data: {"type":"response.output_text.done","sequence_number":6,"item_id":"'
    + _ITEM_ID
    + b'","output_index":0,"content_index":0,"text":"Hi there!","logprobs":[]}\n\n'
    b"event: response.content_part.done\n"
    b'data: {"type":"response.content_part.done","sequence_number":7,"item_id":"'
    + _ITEM_ID
    + b'","output_index":0,"content_index":0,"part":{"type":"output_text","text":"Hi there!","annotations":[]}}\n\n'
    b"event: response.output_item.done\n"
    b'data: {"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":'
    b'{"id":"' + _ITEM_ID + b'","type":"message","status":"completed","role":"assistant","content":'
    b'[{"type":"output_text","text":"Hi there!","annotations":[]}]}}\n\n'
    b"event: response.completed\n"
    b'data: {"type":"response.completed","sequence_number":9,"response":{'
    + _RESPONSE_HEAD
    + b',"status":"completed","output":[{"id":"'
    + _ITEM_ID
    + b'","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text",'
    b'"text":"Hi there!","annotations":[]}]}],"usage":{"input_tokens":3000,"input_tokens_details":'
    b'{"cached_tokens":2048},"output_tokens":300,"output_tokens_details":{"reasoning_tokens":256},'
    b'"total_tokens":3300}}}\n\n'
)

# The same stream cut before its terminal event.
RESPONSES_STREAM_CUT = RESPONSES_STREAM[: RESPONSES_STREAM.index(b"event: response.completed")]

# Gemini streamGenerateContent?alt=sse, after Google's API reference: each chunk a whole
# GenerateContentResponse, `usageMetadata` on every chunk (the prompt only, until the last),
# events ending in "\r\n\r\n", the last chunk with `finishReason` and the whole usage (cached
# content inside the prompt count, thoughts apart from the candidates).
GEMINI_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Why did the"}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 2100,"totalTokenCount": 2100,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 2100}]},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "mR0AaaXJB9qMxN8PqPyPmQQ"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " chicken cross the road?"}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 2100,"totalTokenCount": 2100,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 2100}]},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "mR0AaaXJB9qMxN8PqPyPmQQ"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " To get to the other side."}],"role": "model"},"finishReason": "STOP","index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 2100,"candidatesTokenCount": 14,"totalTokenCount": 2151,"cachedContentTokenCount": 2000,'
    b'"promptTokensDetails": [{"modality": "TEXT","tokenCount": 2100}],"cacheTokensDetails": [{"modality": "TEXT","tokenCount": 2000}],'
    b'"thoughtsTokenCount": 37},"modelVersion": "gemini-2.5-flash","responseId": "mR0AaaXJB9qMxN8PqPyPmQQ"}\r\n\r\n'
)

# A whole generateContent answer with a function call (and its thought signature) and a
# thought summary, as Gemini 2.5 answers with `includeThoughts`.
GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "The user wants the weather.", "thought": True},
                    {
                        "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                        "thoughtSignature": "CiQBVKhc7oYxZWRmZGJjYTU2OWQ4NDJkMDk5NjYxMmQ1YTMxYzI=",
                    },
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 71,
        "candidatesTokenCount": 15,
        "totalTokenCount": 152,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 71}],
        "thoughtsTokenCount": 66,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "4R0AaeqGLPuBxN8P9pb6yAo",
}
