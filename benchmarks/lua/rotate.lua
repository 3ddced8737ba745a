-- GET /api/user/self with a different account's token on each request, cycling through
-- the tokens in the file $QLB_TOKENS_FILE (one a line): lookups spread over the table.
wrk.method = "GET"
wrk.headers["Accept-Encoding"] = "gzip"
local tokens = {}
for line in io.lines(os.getenv("QLB_TOKENS_FILE")) do
  if line ~= "" then tokens[#tokens + 1] = line end
end
local n = 0
local thread_count = 0

function setup(thread)
  thread:set("offset", thread_count * 7919)
  thread_count = thread_count + 1
end

function request()
  n = n + 1
  wrk.headers["Authorization"] = tokens[((n + (offset or 0)) % #tokens) + 1]
  return wrk.format()
end
