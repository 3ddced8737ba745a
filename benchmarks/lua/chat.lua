-- POST /v1/chat/completions (non-stream) with the relay key from $QLB_TOKEN as a bearer
-- token (sent to the pass-through and the upstream too: they ignore it), the model from
-- $QLB_MODEL. The fake upstream answers 13 output tokens.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("QLB_TOKEN") or "none")
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format(
  '{"model":"%s","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}',
  os.getenv("QLB_MODEL") or "bench-gpt")
