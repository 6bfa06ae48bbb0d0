-- wrk script: every request is a distinct chat request (a counter in the user
-- message), so every request is a cache miss.
-- usage: wrk ... -s bench/unique.lua URL -- PREFIX [N_CHOICES]
--   PREFIX     makes this run's requests distinct from any other run's
--   N_CHOICES  `n` of the request (the mock returns n choices: bigger entries)
local report = dofile(os.getenv("BENCH_DIR") .. "/report.lua")

local threads = {}
local counter = 0
local prefix = "run"
local n = 1
local pad = string.rep("filler text so the answer is about two hundred chars ", 3)

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or prefix
  n = tonumber(args[2] or "1")
  wrk.method = "POST"
  wrk.path = "/v1/chat/completions"
  wrk.headers["content-type"] = "application/json"
  wrk.headers["authorization"] = "Bearer sk-bench"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"model":"gpt-4o-mini","n":%d,"messages":[' ..
    '{"role":"system","content":"You are a concise assistant for a load test."},' ..
    '{"role":"user","content":"%s %s-%s-%d: summarise the status of this order"}],' ..
    '"temperature":0}', n, pad, prefix, tostring(tid), counter)
  return wrk.format(nil, nil, nil, body)
end

done = report.done
