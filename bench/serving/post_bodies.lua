-- wrk script: POST prebuilt requests in rotation; print one JSON line of figures at the end.
--   wrk -t1 -c64 -d20s -s post_bodies.lua http://127.0.0.1:3000 -- BODY_DIR COUNT PATH CONTENT_TYPE
-- BODY_DIR holds 0.body ... (COUNT-1).body; CONTENT_TYPE is sent as is (with its multipart boundary).
-- The requests are formatted once, in init, and there is no response() callback (with one, wrk hands
-- every response's headers and body to Lua): the load generator's own CPU stays small, which matters
-- on a machine whose cores it shares with the server. Failed answers are wrk's count of statuses >= 400.

function init(args)
  local dir, count = args[1], tonumber(args[2])
  wrk.method = "POST"
  wrk.path = args[3]
  wrk.headers["Content-Type"] = args[4]
  formatted = {}
  for i = 0, count - 1 do
    local file = assert(io.open(dir .. "/" .. i .. ".body", "rb"))
    formatted[#formatted + 1] = wrk.format(nil, nil, nil, file:read("*all"))
    file:close()
  end
  next_request = math.random(#formatted)
end

function request()
  next_request = next_request % #formatted + 1
  return formatted[next_request]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p90_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "socket_errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
