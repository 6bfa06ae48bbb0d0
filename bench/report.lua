-- Shared wrk `done()`: one machine-readable line that load.sh parses.
-- Latencies are in microseconds (wrk's unit).
local M = {}

function M.done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d secs=%.3f rps=%.1f p50=%d p90=%d p99=%d p999=%d max=%d mean=%.1f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end

return M
