-- wrk script: unique POST /v1/payments requests (same shape as bench/loadgen.py's).
-- wrk -t T -c C -d 20s -s bench/wrk_payments.lua URL -- API_KEY RUN_ID PHONE_OFFSET T
-- Ends with one line "BENCH_JSON {...}": counts per status, latency percentiles (us).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  api_key = args[1] or ""
  run_id = args[2] or "run"
  phone_offset = tonumber(args[3] or "0")
  nthreads = tonumber(args[4] or "1")
  n = 0
  statuses = {}
end

function request()
  local i = n * nthreads + tid
  n = n + 1
  -- six digits ending in 5 (no simulator magic number ends in 5), 100,000 distinct
  local phone = string.format("0708%05d5", (phone_offset + i) % 100000)
  local body = string.format(
    '{"amount":"10","currency":"KES","phone":"%s","reference":"b%d"}', phone, i)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run_id .. "-" .. i,
  }
  if api_key ~= "" then
    headers["Authorization"] = "Bearer " .. api_key
  end
  return wrk.format("POST", "/v1/payments", headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local got = thread:get("statuses")
    for status, count in pairs(got) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    table.insert(parts, string.format('"%s":%d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
