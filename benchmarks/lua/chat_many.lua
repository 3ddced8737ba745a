-- POST /v1/chat/completions (non-stream) as chat.lua, but with a different account's relay
-- key on each request, cycling through the keys in $QLB_TOKENS_FILE (one a line, one key per
-- account): the ledger's row lock is per user, and real traffic spreads over many users.
-- Each wrk process starts at a random key (two processes split the load between two
-- instances and should not march in step over the same users).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format(
  '{"model":"%s","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}',
  os.getenv("QLB_MODEL") or "bench-gpt")
local tokens = {}
for line in io.lines(os.getenv("QLB_TOKENS_FILE")) do
  if line ~= "" then tokens[#tokens + 1] = "Bearer " .. line end
end
local urandom = io.open("/dev/urandom", "rb")
local bytes = urandom:read(4)
urandom:close()
local n = bytes:byte(1) + 256 * bytes:byte(2) + 65536 * bytes:byte(3)

function request()
  n = n + 1
  wrk.headers["Authorization"] = tokens[(n % #tokens) + 1]
  return wrk.format()
end
