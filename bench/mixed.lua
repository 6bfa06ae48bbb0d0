-- wrk script: 80% hits (the fixed body in BODY_FILE, warmed beforehand) and
-- 20% misses (every fifth request is a distinct request).
-- usage: wrk ... -s bench/mixed.lua URL -- BODY_FILE PREFIX
local report = dofile(os.getenv("BENCH_DIR") .. "/report.lua")

local threads = {}
local counter = 0
local hit_body
local prefix = "mixed"

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  hit_body = f:read("*a")
  f:close()
  prefix = args[2] or prefix
  wrk.method = "POST"
  wrk.path = "/v1/chat/completions"
  wrk.headers["content-type"] = "application/json"
  wrk.headers["authorization"] = "Bearer sk-bench"
end

function request()
  counter = counter + 1
  if counter % 5 ~= 0 then
    return wrk.format(nil, nil, nil, hit_body)
  end
  local body = string.format(
    '{"model":"gpt-4o-mini","messages":[' ..
    '{"role":"system","content":"You are a concise assistant for a load test."},' ..
    '{"role":"user","content":"mixed workload miss %s-%s-%d"}],"temperature":0}',
    prefix, tostring(tid), counter)
  return wrk.format(nil, nil, nil, body)
end

done = report.done
