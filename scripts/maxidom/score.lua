-- wrk script: POST the ~42 KB load payload to /api/<route>/<id>, rotating over the imported profiles.
-- Environment: ROUTE (score|train), IDS (comma-separated profile ids), BODY (payload file).
-- RATE and CONNS (optional): pace the load to about RATE requests/s in all. Each of the CONNS connections
-- then waits a random, exponentially distributed time (mean CONNS / RATE s) after each answer, like a fleet of
-- browsers each posting now and then, instead of firing the next request at once (which measures saturation).
local ids = {}
for id in string.gmatch(os.getenv("IDS"), "[^,]+") do ids[#ids + 1] = id end
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end
wrk.method = "POST"
wrk.body = slurp(os.getenv("BODY"))
-- BODY_LATER (optional): the same payload later on the same clock. Each profile then gets BODY, BODY_LATER, BODY, …:
-- the second continues the first's run and the third goes back in time and starts a new one, so every /score
-- changes its profile's run state and writes it, as real sessions do (an identical payload each time would not).
local later = os.getenv("BODY_LATER")
local bodies = { wrk.body }
if later and later ~= "" then bodies[2] = slurp(later) end
wrk.headers["Content-Type"] = "application/json"
local route = os.getenv("ROUTE") or "score"
local rate, conns = tonumber(os.getenv("RATE") or ""), tonumber(os.getenv("CONNS") or "")
local n = 0
-- Each wrk thread has its own Lua state; give each its own random sequence.
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
init = function(args)
  math.randomseed(tonumber(seed) or 1)
end
if rate and conns and rate > 0 then
  local mean_ms = 1000 * conns / rate
  delay = function()
    return math.floor(-mean_ms * math.log(1 - math.random()))
  end
end
request = function()
  n = n + 1
  local body = bodies[(math.floor(n / #ids) % #bodies) + 1]
  return wrk.format(nil, "/api/" .. route .. "/" .. ids[(n % #ids) + 1], nil, body)
end
done = function(summary, latency, requests)
  local codes = summary.errors.status
  io.write(string.format("ROUTE=%s requests=%d non2xx=%d rps=%.0f p50=%.2fms p99=%.2fms\n", route,
    summary.requests, codes, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
