-- wrk script of benches/compare.sh: an optional POST body of BODY_BYTES binary bytes,
-- and one RESULT line: requests, req/s, p50 us, p99 us, errors.
local size = tonumber(os.getenv("BODY_BYTES") or "0")
if size > 0 then
  local bytes = {}
  for i = 1, size do
    bytes[i] = string.char((i * 7 + 3) % 256)
  end
  wrk.method = "POST"
  wrk.body = table.concat(bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %.1f %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), errors))
end
