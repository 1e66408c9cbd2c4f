-- Shared by the phase scripts of benchmarks/server_throughput.py (loaded with dofile).
--
-- Counts every answer by HTTP status and, when it is not 200, by the OAuth "error" member of the
-- body ("400 slow_down"), and at the end writes the run's figures as one JSON object to the file
-- named by $WRK_OUT: requests, duration, socket errors, latency percentiles (microseconds) and
-- the answer counts. wrk runs setup() and done() in its main Lua state and request()/response()
-- in each thread's own state: the counts are read back from the threads with thread:get().

counts = {}

function count_answer(status, body)
  local key = tostring(status)
  if status ~= 200 and body ~= nil then
    local error = string.match(body, '"error"%s*:%s*"([^"]*)"')
    if error ~= nil then key = key .. " " .. error end
  end
  counts[key] = (counts[key] or 0) + 1
end

function response(status, headers, body)
  count_answer(status, body)
end

-- Reads the request lines given in $WRK_LINES: one request per line, "AUTHORIZATION<TAB>BODY"
-- (an empty AUTHORIZATION sends none). Every request is formatted once, here, so that request()
-- costs wrk's core next to nothing.
function load_requests(method)
  local path = os.getenv("WRK_LINES")
  local prepared = {}
  for line in io.lines(path) do
    local auth, body = string.match(line, "^([^\t]*)\t(.*)$")
    local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
    if auth ~= "" then headers["Authorization"] = auth end
    table.insert(prepared, wrk.format(method, nil, headers, body))
  end
  return prepared
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function json_string(s)
  return '"' .. string.gsub(s, '["\\]', '\\%0') .. '"'
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("counts")) do merged[key] = (merged[key] or 0) + n end
  end
  local answers = {}
  for key, n in pairs(merged) do table.insert(answers, json_string(key) .. ":" .. n) end
  local e = summary.errors
  local out = assert(io.open(os.getenv("WRK_OUT"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"non_2xx_3xx":%d,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"answers":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, table.concat(answers, ",")))
  out:close()
end
