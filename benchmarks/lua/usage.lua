-- POST /api/usage with a unique request_id per request: "<run id>-<thread>-<counter>",
-- the run id from $QLB_RUN_ID (unique per wrk run), charging users user0000000 ...
-- user<$QLB_USERS - 1> in turn, with the admin token from $QLB_TOKEN.
wrk.method = "POST"
wrk.headers["Authorization"] = os.getenv("QLB_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept-Encoding"] = "gzip"
local run_id = os.getenv("QLB_RUN_ID") or "run"
local users = tonumber(os.getenv("QLB_USERS") or "100")
local model = os.getenv("QLB_MODEL") or "bench-model"
local counter = 0
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"username":"user%07d","model":"%s","request_id":"%s-%d-%d",' ..
    '"prompt_tokens":1200,"completion_tokens":300}',
    counter % users, model, run_id, tid or 0, counter)
  return wrk.format(nil, nil, nil, body)
end
