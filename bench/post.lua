-- wrk script: the same POST /v1/chat/completions for every request.
-- usage: wrk ... -s bench/post.lua URL -- BODY_FILE
-- The body is read once from BODY_FILE; wrk sends it unchanged (its fast path).
local report = dofile(os.getenv("BENCH_DIR") .. "/report.lua")

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.path = "/v1/chat/completions"
  wrk.headers["content-type"] = "application/json"
  wrk.headers["authorization"] = "Bearer sk-bench"
end

done = report.done
