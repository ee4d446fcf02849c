-- wrk script: POST prebuilt request bodies in rotation; print one JSON line of figures at the end.
--   wrk -t1 -c64 -d20s -s post_bodies.lua http://127.0.0.1:3000 -- BODY_DIR COUNT PATH CONTENT_TYPE
-- BODY_DIR holds 0.body ... (COUNT-1).body; CONTENT_TYPE is sent as is (with its multipart boundary).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local dir, count = args[1], tonumber(args[2])
  wrk.method = "POST"
  wrk.path = args[3]
  wrk.headers["Content-Type"] = args[4]
  bodies = {}
  for i = 0, count - 1 do
    local file = assert(io.open(dir .. "/" .. i .. ".body", "rb"))
    bodies[#bodies + 1] = file:read("*all")
    file:close()
  end
  next_body = math.random(#bodies)
  statuses = {}
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p90_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "socket_errors": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    errors.connect + errors.read + errors.write + errors.timeout, table.concat(parts, ", ")))
end
