-- wrk script: POST the ~42 KB load payload to /api/<route>/<id>, rotating over the imported profiles.
-- Environment: ROUTE (score|train), IDS (comma-separated profile ids), BODY (payload file).
local ids = {}
for id in string.gmatch(os.getenv("IDS"), "[^,]+") do ids[#ids + 1] = id end
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local route = os.getenv("ROUTE") or "score"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/" .. route .. "/" .. ids[(n % #ids) + 1])
end
done = function(summary, latency, requests)
  local codes = summary.errors.status
  io.write(string.format("ROUTE=%s requests=%d non2xx=%d rps=%.0f p50=%.2fms p99=%.2fms\n", route,
    summary.requests, codes, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
