#!/usr/bin/env bash
# Hit-path throughput with the operator features on vs off (issue 13):
# two reprise instances (tiered: memory L1 + one redis-server), identical but
# for `admin.fleet_stats` and the purge watermarks. "on" records fleet stats
# (flushed to Redis every second) and holds purge rules that every hit must
# check (a custom-key glob in the caller's own namespace, a model rule, an
# admin rule on another namespace); "off" has neither. Hits come from L1.
# wrk alternates between them over ROUNDS paired rounds; medians are reported.
#
#   ./bench/operator.sh            # BUILD=0 reuses target/release
#
# Knobs: DURATION=10s CONNECTIONS=32 ROUNDS=5 PIN=1 (server on CPU 0, the rest on CPU 1),
# BIN=target/release (where reprise and mock-upstream are).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD="${BUILD:-1}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
ROUNDS="${ROUNDS:-5}"
PIN="${PIN:-1}"
export BENCH_DIR="$PWD/bench"

if [ "$BUILD" = 1 ]; then
    cargo build --release --bins
fi
BIN="${BIN:-target/release}"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

server_cpu=() client_cpu=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port="$(free_port)"
"${client_cpu[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
"${client_cpu[@]}" "$BIN/mock-upstream" --listen 127.0.0.1:0 >"$work/mock.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
    mock_url="$(head -1 "$work/mock.log" | sed -n 's/^mock-upstream listening on //p')"
    [ -n "$mock_url" ] && redis-cli -p "$redis_port" PING >/dev/null 2>&1 && break
    sleep 0.05
done
export REPRISE_BENCH_ADMIN=sk-bench-admin

start_reprise() { # name fleet_stats: sets URL and PID (not in a subshell, so cleanup sees the pid)
    local port; port="$(free_port)"
    cat >"$work/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_keys_env = "REPRISE_BENCH_ADMIN"
[cache]
backend = "tiered"
[cache.redis]
url = "redis://127.0.0.1:$redis_port"
key_prefix = "bench-$1"
[routing]
default_provider = "mock"
[[providers]]
name = "mock"
kind = "openai"
base_url = "$mock_url/v1"
models = ["*"]
[admin]
fleet_stats = $2
TOML
    RUST_LOG=warn "${server_cpu[@]}" "$BIN/reprise" --config "$work/$1.toml" >"$work/$1.log" 2>&1 &
    PID=$!
    pids+=("$PID")
    URL="http://127.0.0.1:$port"
    for _ in $(seq 200); do
        curl -sf "$URL/health" >/dev/null && break
        sleep 0.05
    done
}

post() { # url path body [auth]
    curl -sf -o /dev/null -w '%{http_code}' "$1$2" -H 'content-type: application/json' \
        -H "authorization: Bearer ${4:-sk-bench}" -d "$3"
}

warm() { # url
    post "$1" /v1/chat/completions @bench/hit-body.json >/dev/null
    for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/v1/chat/completions" \
            -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
            -H 'cache-control: only-if-cached' -d @bench/hit-body.json)" = 200 ] && return
        sleep 0.02
    done
    echo "could not warm $1" >&2
    exit 1
}

start_reprise off false
off=$URL off_pid=$PID
start_reprise on true
on=$URL on_pid=$PID
warm "$off"
warm "$on"
# Rules every hit on "on" checks; none matches the benchmark's entry.
post "$on" /v1/cache/purge '{"custom_keys": ["nomatch:*"]}' >/dev/null
post "$on" /v1/cache/purge '{"model": "some-other-model"}' >/dev/null
post "$on" /v1/cache/purge '{"namespace": "another-tenant"}' sk-bench-admin >/dev/null
warm "$on"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run URL PID: prints "req/s CPU-µs-per-request" (the server's utime + stime over the run:
# on a shared machine CPU per request is steadier than req/s, which other load moves)
run() {
    local c0 c1 out
    c0=$(cpu_ticks "$2")
    out=$("${client_cpu[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/post.lua "$1" \
        -- "$PWD/bench/hit-body.json" 2>/dev/null | awk '/^RESULT/ {print}')
    c1=$(cpu_ticks "$2")
    awk -v line="$out" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {
        n = split(line, kv, " "); for (i = 2; i <= n; i++) {split(kv[i], p, "="); v[p[1]] = p[2]}
        printf "%s %.2f\n", v["rps"], v["requests"] ? 1e6 * t / hz / v["requests"] : 0 }'
}

declare -a r_off r_on c_off c_on
for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then
        read -r a ca < <(run "$off" "$off_pid"); read -r b cb < <(run "$on" "$on_pid")
    else
        read -r b cb < <(run "$on" "$on_pid"); read -r a ca < <(run "$off" "$off_pid")
    fi
    r_off+=("$a") r_on+=("$b") c_off+=("$ca") c_on+=("$cb")
    echo "round $i: off $a req/s ($ca CPU µs/req), on $b req/s ($cb CPU µs/req)"
done
# Still hits, and "on" really recorded fleet stats.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$on/v1/chat/completions" -H 'content-type: application/json' \
    -H 'authorization: Bearer sk-bench' -H 'cache-control: only-if-cached' -d @bench/hit-body.json)" = 200 ]
fleet_requests="$(curl -s "$on/v1/cache/stats?scope=fleet" -H 'authorization: Bearer sk-bench' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')"

python3 - "$fleet_requests" "${r_off[*]}" "${r_on[*]}" "${c_off[*]}" "${c_on[*]}" <<'PY'
import statistics, sys
fleet = sys.argv[1]
off, on, coff, con = ([float(x) for x in a.split()] for a in sys.argv[2:6])
mo, mn = statistics.median(off), statistics.median(on)
print(f"\n| hit path (L1, tiered) | median req/s | range | median CPU µs/request | range |\n|---|---|---|---|---|")
print(f"| fleet stats + watermarks off | {mo:,.0f} | {min(off):,.0f}–{max(off):,.0f} | {statistics.median(coff):.2f} | {min(coff):.2f}–{max(coff):.2f} |")
print(f"| fleet stats + watermarks on  | {mn:,.0f} | {min(on):,.0f}–{max(on):,.0f} | {statistics.median(con):.2f} | {min(con):.2f}–{max(con):.2f} |")
pr = [b / a for a, b in zip(off, on)]
cr = [a / b for a, b in zip(coff, con) if b > 0]
print(f"\non / off, req/s: median of paired ratios {statistics.median(pr):.3f} ({', '.join(f'{x:.3f}' for x in pr)})")
print(f"on / off, requests per CPU second (off CPU/req ÷ on CPU/req): median {statistics.median(cr):.3f} ({', '.join(f'{x:.3f}' for x in cr)})")
print(f"fleet stats recorded by 'on': {fleet} requests")
PY
