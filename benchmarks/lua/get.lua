-- GET with the token from $QLB_TOKEN (never on wrk's command line) and gzip accepted,
-- as curl --compressed, requests and httpx send it. No request() function: wrk builds the
-- request once and resends it, the cheapest load it can generate.
wrk.method = "GET"
local token = os.getenv("QLB_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = token
end
wrk.headers["Accept-Encoding"] = "gzip"
