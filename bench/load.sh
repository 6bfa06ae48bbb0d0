#!/usr/bin/env bash
# End-to-end load benchmark of reprise. One command:
#
#   ./bench/load.sh
#
# Builds the release binaries, starts mock-upstream, a throw-away redis-server,
# reprise (one instance per cache backend, from generated configs) and the
# bare-axum baseline, runs the wrk scenarios below and writes a Markdown table
# to bench/results/latest.md (also printed). Every process it starts is
# stopped on exit. Knobs (environment):
#
#   DURATION=10s         wrk duration of each scenario
#   CONNECTIONS=32       connections of the throughput scenarios
#   THREADS=1            wrk threads
#   MISS_CONNECTIONS=1   connections of the miss-overhead (latency) scenarios
#   MOCK_LATENCY_MS=0    mock-upstream latency before its response headers
#   FILL_DURATION=20s    duration of each L1-fill scenario (two: big and small entries)
#   L1_MIB=64            cache.memory.max_bytes of the L1-fill instance, in MiB
#   FILL_CHOICES=16      `n` of the fill requests (bigger mock answers = bigger entries)
#   STREAM_REQUESTS=500  sequential requests of the streaming TTFB scenario
#   PIN=1                pin servers to SERVER_CPU and wrk + mock + redis to CLIENT_CPU
#   SERVER_CPU=0 CLIENT_CPU=1
#   ROUNDS=3             paired rounds: the hit/bare pair and the miss trio (direct,
#                        through reprise, through reprise on the client's CPU) run
#                        ROUNDS times alternating; the derived ratios are medians
#   PROFILE=0            1 = perf-record reprise during the memory-hit scenario
#   OUT=bench/results/latest.md
#   KEEP=0               1 = keep the work directory (configs, logs, raw wrk output)
#   BUILD=1              0 = use the binaries already in target/release
#   NGINX=1              0 = skip the nginx reference (Debian package nginx-light)
#
# The reference in the same run is nginx (issue 15): nginx returning the stored
# answer's bytes (`return 200`) for hits, and nginx `proxy_pass` with upstream
# keepalive in front of the same mock for misses. Pinned (PIN=1), nginx runs one
# worker on SERVER_CPU like reprise; unpinned (PIN=0, the layout users run and
# the headline), `worker_processes auto` and reprise's default runtime.
#
# Numbers from a shared machine are noisy: compare rows of ONE run as ratios.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
MISS_CONNECTIONS=${MISS_CONNECTIONS:-1}
MOCK_LATENCY_MS=${MOCK_LATENCY_MS:-0}
FILL_DURATION=${FILL_DURATION:-20s}
L1_MIB=${L1_MIB:-64}
FILL_CHOICES=${FILL_CHOICES:-16}
STREAM_REQUESTS=${STREAM_REQUESTS:-500}
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PROFILE=${PROFILE:-0}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-bench/results/latest.md}
KEEP=${KEEP:-0}
BUILD=${BUILD:-1}
NGINX=${NGINX:-1}

export BENCH_DIR="$ROOT/bench"
BODY="$BENCH_DIR/hit-body.json"
CLK_TCK=$(getconf CLK_TCK)
RUN_ID="r$(date +%s)-$$"

if [[ $(nproc) -lt 2 ]]; then
  PIN=0
fi

for tool in wrk redis-server curl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "load.sh: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/reprise-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP == 1 ]]; then
    echo "load.sh: work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

log() { echo "[load.sh] $*" >&2; }
die() { echo "load.sh: $*" >&2; exit 1; }

# Servers on one core, the load generator (and mock, redis) on the other, so
# the two sides do not preempt each other and every server gets the same CPU.
# (Command prefixes, not functions: `taskset` execs the program, so `$!` is
# the server's own pid, which the CPU and RSS readings need.)
PIN_SERVER=()
PIN_CLIENT=()
if [[ $PIN == 1 ]]; then
  PIN_SERVER=(taskset -c "$SERVER_CPU")
  PIN_CLIENT=(taskset -c "$CLIENT_CPU")
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits for "NAME listening on http://ADDR" as the first line of FILE; prints ADDR.
wait_banner() {
  local file=$1 line=""
  for _ in $(seq 200); do
    line=$(head -n1 "$file" 2>/dev/null || true)
    if [[ $line == *"listening on http://"* ]]; then
      echo "${line##*http://}"
      return 0
    fi
    sleep 0.05
  done
  die "no banner in $file: $(cat "$file" "${file%.out}.err" 2>/dev/null)"
}

wait_http() {
  local url=$1
  for _ in $(seq 200); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  die "$url never answered"
}

# CPU ticks (utime + stime) of one pid or a comma-separated list (nginx workers).
cpu_ticks() {
  local p t=0
  for p in ${1//,/ }; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
# "busy total" jiffies of one CPU (user nice system irq softirq steal / all).
core_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/${1%%,*}/status"; }
reset_hwm() { echo 5 >"/proc/${1%%,*}/clear_refs" 2>/dev/null || true; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# --------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
  log "building (cargo build --release --bins)"
  cargo build --release --bins >&2
fi
# The source the binaries were built from (recorded now: others may commit meanwhile).
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- src Cargo.toml 2>/dev/null) ]]; then
  GIT_REV="$GIT_REV (+ uncommitted changes)"
fi

# --------------------------------------------------------------------------
log "starting mock-upstream (latency ${MOCK_LATENCY_MS} ms) and redis-server"
"${PIN_CLIENT[@]}" target/release/mock-upstream --listen 127.0.0.1:0 --latency-ms "$MOCK_LATENCY_MS" \
  >"$WORK/mock.out" 2>"$WORK/mock.err" &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
MOCK_ADDR=$(wait_banner "$WORK/mock.out")

REDIS_PORT=$(free_port)
"${PIN_CLIENT[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do
  [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
  sleep 0.05
done
[[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] || die "redis-server did not start"

declare -A R_PORT R_PID R_IDLE
# start_reprise NAME BACKEND MAX_BYTES [CPU]: pinned to SERVER_CPU, or to CPU if given
start_reprise() {
  local name=$1 backend=$2 max_bytes=$3 cpu=${4:-} port
  local pin=("${PIN_SERVER[@]}")
  [[ -n $cpu && $PIN == 1 ]] && pin=(taskset -c "$cpu")
  port=$(free_port)
  cat >"$WORK/$name.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[cache]
backend = "$backend"

[cache.memory]
max_bytes = $max_bytes

[cache.redis]
url = "redis://127.0.0.1:$REDIS_PORT"
key_prefix = "bench-$name-$RUN_ID"

[routing]
default_provider = "mock"

[[providers]]
name = "mock"
kind = "openai"
base_url = "http://$MOCK_ADDR/v1"
models = ["*"]
EOF
  RUST_LOG=warn "${pin[@]}" target/release/reprise --config "$WORK/$name.toml" \
    --listen "127.0.0.1:$port" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  R_PID[$name]=$!
  PIDS+=("$!")
  R_PORT[$name]=$port
  wait_http "http://127.0.0.1:$port/health"
  R_IDLE[$name]=$(status_kib "${R_PID[$name]}" VmRSS)
  log "reprise[$name] backend=$backend pid=${R_PID[$name]} port=$port idle RSS $(mib "${R_IDLE[$name]}") MiB"
}

log "starting reprise instances"
start_reprise memory memory 268435456
start_reprise redis redis 268435456
start_reprise tiered tiered 268435456
start_reprise l1big memory $((L1_MIB * 1024 * 1024))
start_reprise l1small memory $((L1_MIB * 1024 * 1024))
# A fresh instance for the TTFB scenarios (the memory one is full of misses by then).
start_reprise ttfb memory 268435456
# For the miss-overhead latency on one CPU: wrk, the mock and this reprise share
# CLIENT_CPU, like the direct run (wrk and the mock) does; see BENCHMARKS.md.
start_reprise samecpu memory 268435456 "$CLIENT_CPU"

# post URL BODY_FILE [extra curl args...]: prints the x-cache-status; body to $WORK/last.body
post() {
  local url=$1 body=$2
  shift 2
  curl -sS -o "$WORK/last.body" -D "$WORK/last.head" "$@" \
    -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
    --data-binary "@$body" "$url/v1/chat/completions" >/dev/null
  awk 'tolower($1) == "x-cache-status:" {gsub("\r", ""); print $2}' "$WORK/last.head"
}
header() { awk -v h="$1:" 'tolower($1) == h {gsub("\r", ""); print $2}' "$WORK/last.head"; }

# warm URL TIER: sends BODY until it is a hit from TIER (the write is off the response path).
warm() {
  local url=$1 tier=$2 status=""
  post "$url" "$BODY" >/dev/null
  for _ in $(seq 100); do
    status=$(post "$url" "$BODY")
    if [[ $status == hit && $(header x-cache-tier) == "$tier" ]]; then
      return 0
    fi
    sleep 0.02
  done
  die "$url: no $tier hit after warming (last x-cache-status: $status, tier: $(header x-cache-tier))"
}

warm "http://127.0.0.1:${R_PORT[memory]}" memory
cp "$WORK/last.body" "$WORK/hit-response.json"
HIT_RESPONSE_BYTES=$(wc -c <"$WORK/hit-response.json")
HIT_HEADERS=$(grep -c ':' "$WORK/last.head" || true)
warm "http://127.0.0.1:${R_PORT[redis]}" redis
# tiered: the steady state is an L1 hit (an L2 hit is promoted into L1).
post "http://127.0.0.1:${R_PORT[tiered]}" "$BODY" >/dev/null
warm "http://127.0.0.1:${R_PORT[tiered]}" memory
TIERED_L2=$(redis-cli -p "$REDIS_PORT" --scan --pattern "bench-tiered-$RUN_ID:*" | wc -l)
[[ $TIERED_L2 -ge 1 ]] || die "tiered instance wrote nothing to redis"

log "starting bare-baseline with reprise's hit body (${HIT_RESPONSE_BYTES} bytes)"
"${PIN_SERVER[@]}" target/release/bare-baseline --listen 127.0.0.1:0 --body-file "$WORK/hit-response.json" \
  >"$WORK/bare.out" 2>"$WORK/bare.err" &
BARE_PID=$!
PIDS+=("$BARE_PID")
BARE_ADDR=$(wait_banner "$WORK/bare.out")
post "http://$BARE_ADDR" "$BODY" >/dev/null
BARE_RESPONSE_BYTES=$(wc -c <"$WORK/last.body")
BARE_HEADERS=$(grep -c ':' "$WORK/last.head" || true)

# nginx, twice: returning the hit's bytes, and proxy_pass (keepalive) to the mock.
NGINX_WORKERS=auto
[[ $PIN == 1 ]] && NGINX_WORKERS=1
# start_nginx NAME SERVER_BLOCK: prints nothing; sets NG_PORT[NAME], NG_PIDS[NAME] (workers)
declare -A NG_PORT NG_PIDS
start_nginx() {
  local name=$1 block=$2 port dir="$WORK/nginx-$1" master workers=""
  port=$(free_port)
  mkdir -p "$dir"
  chmod 777 "$dir"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  upstream mock { server $MOCK_ADDR; keepalive 64; }
  server {
    listen 127.0.0.1:$port reuseport;
$block
  }
}
EOF
  "${PIN_SERVER[@]}" nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/out" 2>&1 &
  master=$!
  PIDS+=("$master")
  NG_PORT[$name]=$port
  for _ in $(seq 200); do
    workers=$(pgrep -d, -P "$master" || true)
    [[ -n $workers ]] && curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.05
  done
  [[ -n $workers ]] || die "nginx $name did not start: $(cat "$dir/out" "$dir/error.log" 2>/dev/null)"
  NG_PIDS[$name]=$workers
  log "nginx[$name] workers=$workers port=$port"
}
if [[ $NGINX == 1 ]] && command -v nginx >/dev/null; then
  # The hit body as an nginx single-quoted string (escape backslashes and quotes).
  HIT_LITERAL=$(sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" "$WORK/hit-response.json")
  start_nginx hit "    location / { default_type application/json; return 200 '$HIT_LITERAL'; }"
  start_nginx proxy "    location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering on; }"
  post "http://127.0.0.1:${NG_PORT[hit]}" "$BODY" >/dev/null
  cmp -s "$WORK/last.body" "$WORK/hit-response.json" || die "nginx hit body differs from reprise's"
  NGINX_URL_HIT="http://127.0.0.1:${NG_PORT[hit]}"
  NGINX_URL_PROXY="http://127.0.0.1:${NG_PORT[proxy]}"
else
  NGINX=0
  log "nginx reference skipped (NGINX=0 or nginx not installed)"
fi

# --------------------------------------------------------------------------
ROWS=()
declare -A RES
# scenario ID LABEL PID URL CONNS DURATION SCRIPT [script args...]
scenario() {
  local id=$1 label=$2 pid=$3 url=$4 conns=$5 dur=$6 script=$7
  shift 7
  log "scenario $id: $label ($conns connections, $dur)"
  reset_hwm "$pid"
  local c0 c1 line k0 k1
  c0=$(cpu_ticks "$pid")
  k0=$(core_ticks "$SERVER_CPU")
  # wrk refuses more threads than connections (THREADS=2 with the 1-connection misses).
  local threads=$THREADS
  ((conns < threads)) && threads=$conns
  "${PIN_CLIENT[@]}" wrk -t"$threads" -c"$conns" -d"$dur" --latency -s "$BENCH_DIR/$script" "$url" -- "$@" \
    >"$WORK/$id.wrk" 2>&1 || die "wrk failed: $(cat "$WORK/$id.wrk")"
  c1=$(cpu_ticks "$pid")
  k1=$(core_ticks "$SERVER_CPU")
  line=$(grep '^RESULT ' "$WORK/$id.wrk") || die "no RESULT from wrk: $(cat "$WORK/$id.wrk")"
  local kv k v
  for kv in ${line#RESULT }; do
    k=${kv%%=*}
    v=${kv#*=}
    RES[$id.$k]=$v
  done
  RES[$id.cpu_s]=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
  RES[$id.cpu_pct]=$(awk -v c="${RES[$id.cpu_s]}" -v s="${RES[$id.secs]}" 'BEGIN {printf "%.0f", 100 * c / s}')
  RES[$id.cpu_us_req]=$(awk -v c="${RES[$id.cpu_s]}" -v n="${RES[$id.requests]}" 'BEGIN {printf "%.1f", n ? 1e6 * c / n : 0}')
  # What else ran on the server's CPU meanwhile (other processes, other builds):
  # busy share of that CPU minus the server's own CPU time (only meaningful pinned).
  RES[$id.other]=$(awk -v a="$k0" -v b="$k1" -v c=$((c1 - c0)) 'BEGIN {
    split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; total = y[2] - x[2];
    o = total ? 100 * (busy - c) / total : 0; if (o < 0) o = 0; printf "%.0f", o }')
  RES[$id.hwm]=$(mib "$(status_kib "$pid" VmHWM)")
  RES[$id.rss]=$(mib "$(status_kib "$pid" VmRSS)")
  local errors=$((RES[$id.err_connect] + RES[$id.err_read] + RES[$id.err_write] + RES[$id.err_status] + RES[$id.err_timeout]))
  RES[$id.errors]=$errors
  [[ ${NO_ROW:-0} == 1 ]] || ROWS+=("| $label | $conns | ${RES[$id.rps]%.*} | ${RES[$id.p50]} | ${RES[$id.p99]} | ${RES[$id.p999]} | ${RES[$id.max]} | $errors | ${RES[$id.cpu_pct]}% | ${RES[$id.other]}% | ${RES[$id.cpu_us_req]} | ${RES[$id.hwm]} |")
  log "  -> ${RES[$id.rps]} req/s, p50 ${RES[$id.p50]} us, p99 ${RES[$id.p99]} us, errors $errors, CPU ${RES[$id.cpu_pct]}%"
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR) printf "%s … %s", lo, hi}'; }

# Paired rounds: on a shared machine one pair of runs can land in a noisy
# second; the same pairs again, alternating, give a median and a spread.
# Round 1 is the pair in the main table; the extra hit rounds run right after
# it (same L1 state), the extra miss rounds right after the miss scenarios.
hit_rounds() {
  local r
  for r in $(seq 2 "$ROUNDS"); do
    NO_ROW=1
    scenario "bare_r$r" "bare (round $r)" "$BARE_PID" "$BARE" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
    scenario "hit_mem_r$r" "hits, memory (round $r)" "${R_PID[memory]}" "$MEM" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
    if [[ $NGINX == 1 ]]; then
      scenario "nginx_hit_r$r" "nginx, same bytes (round $r)" "${NG_PIDS[hit]}" "$NGINX_URL_HIT" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
    fi
    NO_ROW=0
  done
}
miss_rounds() {
  local r
  for r in $(seq 2 "$ROUNDS"); do
    NO_ROW=1
    scenario "miss_direct_r$r" "misses direct (round $r)" "$MOCK_PID" "$MOCK" "$MISS_CONNECTIONS" "$DURATION" unique.lua "direct$r-$RUN_ID"
    scenario "miss_proxy_r$r" "misses via reprise (round $r)" "${R_PID[memory]}" "$MEM" "$MISS_CONNECTIONS" "$DURATION" unique.lua "proxy$r-$RUN_ID"
    if [[ $NGINX == 1 ]]; then
      scenario "miss_nginx_r$r" "misses via nginx proxy_pass (round $r)" "${NG_PIDS[proxy]}" "$NGINX_URL_PROXY" "$MISS_CONNECTIONS" "$DURATION" unique.lua "nginx$r-$RUN_ID"
    fi
    if [[ $PIN == 1 ]]; then
      scenario "miss_same_r$r" "misses via reprise, client CPU (round $r)" "${R_PID[samecpu]}" \
        "http://127.0.0.1:${R_PORT[samecpu]}" "$MISS_CONNECTIONS" "$DURATION" unique.lua "same$r-$RUN_ID"
    fi
    NO_ROW=0
  done
}

MEM="http://127.0.0.1:${R_PORT[memory]}"
RED="http://127.0.0.1:${R_PORT[redis]}"
TIE="http://127.0.0.1:${R_PORT[tiered]}"
MOCK="http://$MOCK_ADDR"
BARE="http://$BARE_ADDR"

if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
  # Flat profile (release binaries carry symbols but no frame pointers).
  ( sleep 1; perf record -F 999 -e cpu-clock -p "${R_PID[memory]}" -o "$WORK/perf.data" \
      -- sleep 6 >/dev/null 2>&1 ) &
  PERF_PID=$!
fi
scenario hit_mem "hits, memory (L1)" "${R_PID[memory]}" "$MEM" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
if [[ -n ${PERF_PID:-} ]]; then
  wait "$PERF_PID" || true
  mkdir -p bench/results
  {
    echo "# perf record -e cpu-clock of reprise during 'hits, memory (L1)'; flat, by shared object then symbol"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
    echo
    perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
  } >bench/results/profile-memory-hits.txt || true
  log "profile written to bench/results/profile-memory-hits.txt"
fi
scenario bare "bare axum baseline (same response bytes)" "$BARE_PID" "$BARE" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
if [[ $NGINX == 1 ]]; then
  scenario nginx_hit "nginx returning the same bytes" "${NG_PIDS[hit]}" "$NGINX_URL_HIT" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
fi
hit_rounds
scenario hit_redis "hits, redis backend (L1 off)" "${R_PID[redis]}" "$RED" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
scenario hit_tiered "hits, tiered (L1 + redis)" "${R_PID[tiered]}" "$TIE" "$CONNECTIONS" "$DURATION" post.lua "$BODY"
scenario miss_direct "misses, straight to mock" "$MOCK_PID" "$MOCK" "$MISS_CONNECTIONS" "$DURATION" unique.lua "direct-$RUN_ID"
scenario miss_proxy "misses, through reprise (memory)" "${R_PID[memory]}" "$MEM" "$MISS_CONNECTIONS" "$DURATION" unique.lua "proxy-$RUN_ID"
if [[ $NGINX == 1 ]]; then
  scenario miss_nginx "misses, through nginx proxy_pass (keepalive)" "${NG_PIDS[proxy]}" "$NGINX_URL_PROXY" "$MISS_CONNECTIONS" "$DURATION" unique.lua "nginx-$RUN_ID"
fi
if [[ $PIN == 1 ]]; then
  scenario miss_same "misses, through reprise on the client's CPU (memory)" "${R_PID[samecpu]}" \
    "http://127.0.0.1:${R_PORT[samecpu]}" "$MISS_CONNECTIONS" "$DURATION" unique.lua "same-$RUN_ID"
fi
miss_rounds
if [[ $CONNECTIONS != "$MISS_CONNECTIONS" ]]; then
  scenario miss_direct_c "misses, straight to mock" "$MOCK_PID" "$MOCK" "$CONNECTIONS" "$DURATION" unique.lua "directc-$RUN_ID"
  scenario miss_proxy_c "misses, through reprise (memory)" "${R_PID[memory]}" "$MEM" "$CONNECTIONS" "$DURATION" unique.lua "proxyc-$RUN_ID"
  if [[ $NGINX == 1 ]]; then
    scenario miss_nginx_c "misses, through nginx proxy_pass (keepalive)" "${NG_PIDS[proxy]}" "$NGINX_URL_PROXY" "$CONNECTIONS" "$DURATION" unique.lua "nginxc-$RUN_ID"
  fi
fi
scenario mixed "mixed 80% hits / 20% misses (memory)" "${R_PID[memory]}" "$MEM" "$CONNECTIONS" "$DURATION" mixed.lua "$BODY" "mixed-$RUN_ID"

# L1 fill: distinct requests until far more than L1_MIB was stored, once with
# big answers (n=FILL_CHOICES) and once with small ones (n=1).
FILL_ROWS=()
# fill ID INSTANCE CHOICES
fill() {
  local id=$1 name=$2 choices=$3 url="http://127.0.0.1:${R_PORT[$2]}" pid=${R_PID[$2]}
  local probe="$WORK/$id-probe.json" entry_bytes sampler rss_end hwm stored curve
  printf '{"model":"gpt-4o-mini","n":%d,"messages":[{"role":"user","content":"%s probe"}]}' \
    "$choices" "$(printf 'filler text so the answer is about two hundred chars %.0s' 1 2 3)" >"$probe"
  post "$url" "$probe" >/dev/null
  entry_bytes=$(wc -c <"$WORK/last.body")
  (
    while kill -0 "$pid" 2>/dev/null; do
      echo "$(date +%s.%N) $(status_kib "$pid" VmRSS)"
      sleep 1
    done
  ) >"$WORK/$id-rss.txt" &
  sampler=$!
  PIDS+=("$sampler")
  scenario "$id" "L1 fill: distinct requests, n=$choices, ~$entry_bytes B answers (${L1_MIB} MiB L1)" \
    "$pid" "$url" "$CONNECTIONS" "$FILL_DURATION" unique.lua "$id-$RUN_ID" "$choices"
  sleep 2
  kill "$sampler" 2>/dev/null || true
  rss_end=$(status_kib "$pid" VmRSS)
  hwm=$(status_kib "$pid" VmHWM)
  # Response bytes written into the L1 (bodies only, without per-entry overhead).
  stored=$(awk -v n="${RES[$id.requests]}" -v b="$entry_bytes" 'BEGIN {printf "%.0f", n * b / 1048576}')
  # RSS at each quarter of the run.
  curve=$(awk 'NR == 1 {t0 = $1} {t[NR] = $1 - t0; r[NR] = $2} END {
    for (q = 1; q <= 4; q++) { i = int(NR * q / 4); if (i < 1) i = 1;
      printf "%s%.0fs: %.0f", (q > 1 ? ", " : ""), t[i], r[i] / 1024 } }' "$WORK/$id-rss.txt")
  FILL_ROWS+=("| n=$choices: ${RES[$id.requests]} distinct entries of ~$entry_bytes B (≈ $stored MiB of bodies) | $(mib "${R_IDLE[$name]}") | $curve | $(mib "$rss_end") | $(mib "$hwm") | $(awk -v r="$hwm" -v l="$L1_MIB" -v i="${R_IDLE[$name]}" 'BEGIN {printf "%.0f", r / 1024 - i / 1024 - l}') |")
}
fill fill_big l1big "$FILL_CHOICES"
fill fill_small l1small 1

# --------------------------------------------------------------------------
# Streaming: replayed hits, if reprise caches streams. Three sizes: the bench
# request (a short tool-call answer), and long answers with n=1 and n=8 choices.
STREAM_ROWS=()
# ttfb ID LABEL ADDR BODY_FILE: sequential requests with the raw-socket client.
ttfb() {
  local id=$1 label=$2 addr=$3 body=$4 line kv
  log "scenario $id: $STREAM_REQUESTS sequential requests ($label)"
  local k0 k1 c0 c1 pid=${R_PID[ttfb]}
  [[ $addr == "$BARE_ADDR" ]] && pid=$BARE_PID
  c0=$(cpu_ticks "$pid")
  k0=$(core_ticks "$SERVER_CPU")
  line=$("${PIN_CLIENT[@]}" python3 "$BENCH_DIR/stream_ttfb.py" "$addr" "$body" "$STREAM_REQUESTS" | grep '^RESULT ')
  c1=$(cpu_ticks "$pid")
  k1=$(core_ticks "$SERVER_CPU")
  for kv in ${line#RESULT }; do RES[$id.${kv%%=*}]=${kv#*=}; done
  RES[$id.other]=$(awk -v a="$k0" -v b="$k1" -v c=$((c1 - c0)) 'BEGIN {
    split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; total = y[2] - x[2];
    o = total ? 100 * (busy - c) / total : 0; if (o < 0) o = 0; printf "%.0f", o }')
}
# ttfb_row CASE LABEL: one table row, medians over the rounds (p99: with range).
ttfb_row() {
  local case=$1 label=$2 r f
  declare -A V=()
  for f in ttfb_p50 ttfb_p99 ttlb_p50 ttlb_p99 other; do
    local vals=()
    for r in $(seq "$ROUNDS"); do vals+=("${RES[${case}_r$r.$f]}"); done
    V[$f]=$(median "${vals[@]}")
    [[ $f == ttfb_p99 ]] && V[range]=$(spread "${vals[@]}")
    [[ $f == other ]] && V[other_max]=$(printf '%s\n' "${vals[@]}" | sort -g | tail -1)
  done
  STREAM_ROWS+=("| $label | $ROUNDS × ${RES[${case}_r1.n]} | ${V[ttfb_p50]} | **${V[ttfb_p99]}** (${V[range]}) | ${V[ttlb_p50]} | ${V[ttlb_p99]} | ${RES[${case}_r1.statuses]} | ${V[other_max]}% |")
}
LONG_TEXT=$(printf 'filler text so the answer is about two hundred chars %.0s' 1 2 3 4)
python3 - "$BODY" "$WORK" "$LONG_TEXT" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
body["stream"] = True
body["messages"][-1]["content"] += " (streamed)"
open(sys.argv[2] + "/stream-short.json", "w").write(json.dumps(body))
for n in (1, 8):
    long = {"model": "gpt-4o-mini", "stream": True, "n": n,
            "messages": [{"role": "user", "content": sys.argv[3]}]}
    open(sys.argv[2] + "/stream-n%d.json" % n, "w").write(json.dumps(long))
PY
STREAM_STATUS=""
TTFB_URL="http://127.0.0.1:${R_PORT[ttfb]}"
TTFB_CASES=()
declare -A TTFB_LABEL TTFB_ADDR TTFB_BODY
for case in short n1 n8; do
  STREAM_BODY="$WORK/stream-$case.json"
  post "$TTFB_URL" "$STREAM_BODY" -N >/dev/null
  for _ in $(seq 50); do
    STREAM_STATUS=$(post "$TTFB_URL" "$STREAM_BODY" -N)
    [[ $STREAM_STATUS == hit ]] && break
    sleep 0.02
  done
  [[ $STREAM_STATUS == hit ]] || break
  STREAM_BYTES=$(wc -c <"$WORK/last.body")
  STREAM_EVENTS=$(grep -c '^data:' "$WORK/last.body" || true)
  TTFB_CASES+=("stream_$case")
  TTFB_LABEL[stream_$case]="streamed hits, memory: $case ($STREAM_EVENTS events, $STREAM_BYTES B)"
  TTFB_ADDR[stream_$case]="127.0.0.1:${R_PORT[ttfb]}"
  TTFB_BODY[stream_$case]=$STREAM_BODY
done
if [[ $STREAM_STATUS == hit ]]; then
  STREAM_NOTE="Stream caching is in: a repeated \`\"stream\": true\` request is a hit."
else
  STREAM_NOTE="Streamed hits not yet measured: stream caching not landed (a repeated \`\"stream\": true\` request answers \`x-cache-status: ${STREAM_STATUS:-none}\`)."
fi
# The same client on non-stream hits and on the bare baseline: the floor.
post "$TTFB_URL" "$BODY" >/dev/null
warm "$TTFB_URL" memory
TTFB_CASES+=(json_ttfb bare_ttfb)
TTFB_LABEL[json_ttfb]="JSON hits, memory ($HIT_RESPONSE_BYTES B)"
TTFB_ADDR[json_ttfb]="127.0.0.1:${R_PORT[ttfb]}"
TTFB_BODY[json_ttfb]=$BODY
TTFB_LABEL[bare_ttfb]="bare axum baseline ($BARE_RESPONSE_BYTES B)"
TTFB_ADDR[bare_ttfb]=$BARE_ADDR
TTFB_BODY[bare_ttfb]=$BODY
# Rounds: every case once per round, so a noisy stretch hits all cases alike.
for r in $(seq "$ROUNDS"); do
  for case in "${TTFB_CASES[@]}"; do
    ttfb "${case}_r$r" "${TTFB_LABEL[$case]} (round $r)" "${TTFB_ADDR[$case]}" "${TTFB_BODY[$case]}"
  done
done
for case in "${TTFB_CASES[@]}"; do ttfb_row "$case" "${TTFB_LABEL[$case]}"; done

# --------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a / b : 0}'; }
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%d", a - b}'; }
ROUND_ROWS=()
HIT_RATIOS=() HIT_P99S=() SAME_P50S=() SAME_P99S=() OWN_P50S=() OWN_P99S=()
NG_HIT_RATIOS=() NG_P99_RATIOS=() NG_OVER_P50S=() NG_OVER_P99S=() NG_X_P50S=() NG_X_P99S=()
NG_ROUND_ROWS=()
# nginx_round R HIT NGINX_HIT DIRECT PROXY NGINX_PROXY: ratios to nginx in one round
nginx_round() {
  local r=$1 hit=$2 nhit=$3 direct=$4 proxy=$5 nproxy=$6
  [[ -n ${RES[$nhit.rps]:-} && -n ${RES[$nproxy.p50]:-} ]] || return 0
  local hr pr op50 op99 np50 np99 x50 x99
  hr=$(ratio "${RES[$hit.rps]}" "${RES[$nhit.rps]}")
  pr=$(ratio "${RES[$hit.p99]}" "${RES[$nhit.p99]}")
  op50=$(diff_us "${RES[$proxy.p50]}" "${RES[$direct.p50]}")
  op99=$(diff_us "${RES[$proxy.p99]}" "${RES[$direct.p99]}")
  np50=$(diff_us "${RES[$nproxy.p50]}" "${RES[$direct.p50]}")
  np99=$(diff_us "${RES[$nproxy.p99]}" "${RES[$direct.p99]}")
  # Overhead ratios; an nginx overhead below 1 µs counts as 1 µs (no division by zero).
  x50=$(awk -v a="$op50" -v b="$np50" 'BEGIN {if (b < 1) b = 1; printf "%.2f", a / b}')
  x99=$(awk -v a="$op99" -v b="$np99" 'BEGIN {if (b < 1) b = 1; printf "%.2f", a / b}')
  NG_HIT_RATIOS+=("$hr") NG_P99_RATIOS+=("$pr") NG_OVER_P50S+=("$np50") NG_OVER_P99S+=("$np99")
  NG_X_P50S+=("$x50") NG_X_P99S+=("$x99")
  NG_ROUND_ROWS+=("| $r | ${RES[$hit.rps]%.*} / ${RES[$hit.p99]} | ${RES[$nhit.rps]%.*} / ${RES[$nhit.p99]} | $hr | $pr | $op50 / $op99 | $np50 / $np99 | $x50 / $x99 |")
}
round_row() {
  local r=$1 hit=$2 bare=$3 direct=$4 proxy=$5 same=$6
  local hr op50 op99 sp50="–" sp99="–"
  hr=$(ratio "${RES[$hit.rps]}" "${RES[$bare.rps]}")
  op50=$(diff_us "${RES[$proxy.p50]}" "${RES[$direct.p50]}")
  op99=$(diff_us "${RES[$proxy.p99]}" "${RES[$direct.p99]}")
  HIT_RATIOS+=("$hr") HIT_P99S+=("${RES[$hit.p99]}") OWN_P50S+=("$op50") OWN_P99S+=("$op99")
  if [[ -n $same && -n ${RES[$same.p50]:-} ]]; then
    sp50=$(diff_us "${RES[$same.p50]}" "${RES[$direct.p50]}")
    sp99=$(diff_us "${RES[$same.p99]}" "${RES[$direct.p99]}")
    SAME_P50S+=("$sp50") SAME_P99S+=("$sp99")
  fi
  ROUND_ROWS+=("| $r | ${RES[$hit.rps]%.*} / ${RES[$hit.p99]} | ${RES[$bare.rps]%.*} / ${RES[$bare.p99]} | $hr | ${RES[$direct.p50]} / ${RES[$direct.p99]} | ${RES[$proxy.p50]} / ${RES[$proxy.p99]} | $op50 / $op99 | ${RES[$same.p50]:-–} / ${RES[$same.p99]:-–} | $sp50 / $sp99 |")
}
round_row 1 hit_mem bare miss_direct miss_proxy miss_same
nginx_round 1 hit_mem nginx_hit miss_direct miss_proxy miss_nginx
for r in $(seq 2 "$ROUNDS"); do
  round_row "$r" "hit_mem_r$r" "bare_r$r" "miss_direct_r$r" "miss_proxy_r$r" "miss_same_r$r"
  nginx_round "$r" "hit_mem_r$r" "nginx_hit_r$r" "miss_direct_r$r" "miss_proxy_r$r" "miss_nginx_r$r"
done

HIT_VS_BARE=$(ratio "${RES[hit_mem.rps]}" "${RES[bare.rps]}")
REDIS_VS_BARE=$(ratio "${RES[hit_redis.rps]}" "${RES[bare.rps]}")
OVER_P50=$(diff_us "${RES[miss_proxy.p50]}" "${RES[miss_direct.p50]}")
OVER_P99=$(diff_us "${RES[miss_proxy.p99]}" "${RES[miss_direct.p99]}")
OVER_P999=$(diff_us "${RES[miss_proxy.p999]}" "${RES[miss_direct.p999]}")
if [[ -n ${RES[miss_same.p50]:-} ]]; then
  SAME_P50=$(diff_us "${RES[miss_same.p50]}" "${RES[miss_direct.p50]}")
  SAME_P99=$(diff_us "${RES[miss_same.p99]}" "${RES[miss_direct.p99]}")
  SAME_P999=$(diff_us "${RES[miss_same.p999]}" "${RES[miss_direct.p999]}")
fi

MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM_TOTAL=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
if [[ $PIN == 1 ]]; then
  PINNING="servers (reprise, bare-baseline) pinned to CPU $SERVER_CPU; wrk, mock-upstream, redis-server and the stream client pinned to CPU $CLIENT_CPU (\`taskset\`). A server pinned to one CPU runs one tokio worker (tokio sizes its pool from the affinity mask)."
else
  PINNING="no CPU pinning (PIN=0): servers, wrk, mock-upstream and redis-server share all CPUs."
fi

mkdir -p "$(dirname "$OUT")"
{
  echo "# reprise load benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); commit $GIT_REV"
  echo "- machine: $(nproc) CPUs ($MODEL), $MEM_TOTAL RAM, kernel $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- toolchain: $(rustc --version); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2); redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
  echo "- wrk: $THREADS thread(s), $DURATION per scenario; $PINNING"
  echo "- request: \`bench/hit-body.json\` ($(wc -c <"$BODY") bytes, system prompt + 3 turns + 1 tool); hit response $HIT_RESPONSE_BYTES bytes with $HIT_HEADERS header lines (bare baseline: $BARE_RESPONSE_BYTES bytes, $BARE_HEADERS header lines); mock-upstream latency $MOCK_LATENCY_MS ms"
  echo "- shared, noisy machine: compare rows of this run as ratios, not across runs"
  echo
  echo "Latencies in µs (wrk, measured on the client). CPU = server process CPU time / wall time (100% = one core); other load = busy time of the server's CPU not spent in the server (other processes: a high value means the row is disturbed); CPU µs/req = server CPU time per request; peak RSS = VmHWM of the server during the scenario."
  echo
  echo "| scenario | conns | req/s | p50 µs | p99 µs | p99.9 µs | max µs | errors | server CPU | other load on server's CPU | CPU µs/req | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  if [[ ${#NG_HIT_RATIOS[@]} -gt 0 ]]; then
    echo "Against nginx in this run (nginx: \`worker_processes $NGINX_WORKERS\`; medians of $ROUNDS paired rounds, range in brackets):"
    echo
    echo "| reprise vs nginx | value | target (issue 15) |"
    echo "|---|---|---|"
    echo "| memory hits / nginx returning the same bytes (req/s) | **$(median "${NG_HIT_RATIOS[@]}")** ($(spread "${NG_HIT_RATIOS[@]}")) | ≥ 0.6 |"
    echo "| memory hits p99 / nginx p99 | **$(median "${NG_P99_RATIOS[@]}")** ($(spread "${NG_P99_RATIOS[@]}")) | ≤ 1.5 |"
    echo "| miss overhead over a direct call at $MISS_CONNECTIONS connection(s): reprise ÷ nginx proxy_pass, p50 | **$(median "${NG_X_P50S[@]}")** ($(spread "${NG_X_P50S[@]}")); nginx's own overhead p50 $(median "${NG_OVER_P50S[@]}") µs | ≤ 1.5 |"
    echo "| the same, p99 | **$(median "${NG_X_P99S[@]}")** ($(spread "${NG_X_P99S[@]}")); nginx's own overhead p99 $(median "${NG_OVER_P99S[@]}") µs | ≤ 2 |"
    if [[ -n ${RES[miss_nginx_c.rps]:-} && -n ${RES[miss_proxy_c.rps]:-} ]]; then
      echo "| miss throughput at $CONNECTIONS connections: reprise / nginx proxy_pass (req/s) | **$(ratio "${RES[miss_proxy_c.rps]}" "${RES[miss_nginx_c.rps]}")** (${RES[miss_proxy_c.rps]%.*} / ${RES[miss_nginx_c.rps]%.*}) | ≥ 0.7 |"
    fi
    echo
    echo "| round | reprise hits req/s / p99 µs | nginx hits req/s / p99 µs | hits ratio | p99 ratio | reprise miss overhead p50 / p99 µs | nginx proxy_pass overhead p50 / p99 µs | overhead ratio p50 / p99 |"
    echo "|---:|---:|---:|---:|---:|---|---|---|"
    printf '%s\n' "${NG_ROUND_ROWS[@]}"
    echo
  fi
  echo "| derived | value |"
  echo "|---|---|"
  echo "| memory hits / bare baseline (req/s), median of $ROUNDS paired rounds (range) | **$(median "${HIT_RATIOS[@]}")** ($(spread "${HIT_RATIOS[@]}")) |"
  echo "| memory hits / bare baseline (req/s), round 1 | $HIT_VS_BARE |"
  echo "| memory hits p99, median of $ROUNDS rounds (range) | **$(median "${HIT_P99S[@]}") µs** ($(spread "${HIT_P99S[@]}")) |"
  echo "| memory hits / bare baseline (server CPU per request, bare ÷ reprise) | $(ratio "${RES[bare.cpu_us_req]}" "${RES[hit_mem.cpu_us_req]}") |"
  echo "| redis-backend hits / bare baseline (req/s) | $REDIS_VS_BARE |"
  echo "| miss overhead at $MISS_CONNECTIONS connection(s) (reprise − direct), reprise on its own CPU | p50 $OVER_P50 µs, p99 $OVER_P99 µs, p99.9 $OVER_P999 µs |"
  echo "| miss overhead, reprise on its own CPU, median of $ROUNDS rounds (range) | p50 **$(median "${OWN_P50S[@]}") µs** ($(spread "${OWN_P50S[@]}")), p99 **$(median "${OWN_P99S[@]}") µs** ($(spread "${OWN_P99S[@]}")) |"
  [[ -n ${SAME_P50:-} ]] && echo "| miss overhead at $MISS_CONNECTIONS connection(s) (reprise − direct), reprise on the client's CPU | p50 $SAME_P50 µs, p99 $SAME_P99 µs, p99.9 $SAME_P999 µs |"
  [[ -n ${SAME_P50:-} ]] && echo "| miss overhead, reprise on the client's CPU, median of $ROUNDS rounds (range) | p50 **$(median "${SAME_P50S[@]}") µs** ($(spread "${SAME_P50S[@]}")), p99 **$(median "${SAME_P99S[@]}") µs** ($(spread "${SAME_P99S[@]}")) |"
  if [[ -n ${RES[miss_proxy_c.rps]:-} ]]; then
    echo "| miss throughput at $CONNECTIONS connections, reprise / direct | $(ratio "${RES[miss_proxy_c.rps]}" "${RES[miss_direct_c.rps]}") (p50 +$(diff_us "${RES[miss_proxy_c.p50]}" "${RES[miss_direct_c.p50]}") µs) |"
  fi
  echo "| idle RSS right after start (memory / redis / tiered / l1big / l1small / ttfb instances) | $(mib "${R_IDLE[memory]}") / $(mib "${R_IDLE[redis]}") / $(mib "${R_IDLE[tiered]}") / $(mib "${R_IDLE[l1big]}") / $(mib "${R_IDLE[l1small]}") / $(mib "${R_IDLE[ttfb]}") MiB |"
  echo "| RSS after the miss and mixed scenarios (memory instance, 256 MiB L1, ~$HIT_RESPONSE_BYTES B entries) | $(mib "$(status_kib "${R_PID[memory]}" VmRSS)") MiB |"
  echo
  echo "Paired rounds (alternating, $DURATION each; round 1 is the table above). Hits at $CONNECTIONS connections, req/s; misses at $MISS_CONNECTIONS connection(s), p50 / p99 µs:"
  echo
  echo "| round | memory hits req/s / p99 µs | bare req/s / p99 µs | hits / bare | misses direct | via reprise (own CPU) | overhead | via reprise (client's CPU) | overhead |"
  echo "|---:|---:|---:|---:|---|---|---|---|---|"
  printf '%s\n' "${ROUND_ROWS[@]}"
  echo
  echo "RSS with a full L1 (\`cache.memory.max_bytes\` = $L1_MIB MiB), in MiB; *excess* = peak − idle − $L1_MIB:"
  echo
  echo "| L1 fill ($FILL_DURATION, $CONNECTIONS connections) | idle | RSS at each quarter of the run (s: MiB) | after | peak | excess |"
  echo "|---|---:|---|---:|---:|---:|"
  printf '%s\n' "${FILL_ROWS[@]}"
  echo
  echo "Time to first / last byte, sequential requests on one keep-alive connection (\`bench/stream_ttfb.py\`, raw socket, client pinned with wrk's CPU), µs. $STREAM_NOTE"
  echo
  echo "Each case ran once per round, $ROUNDS rounds interleaved; medians over the rounds (TTFB p99 with its range); other load: the worst round."
  echo
  echo "| requests | rounds × n | TTFB p50 | TTFB p99 | TTLB p50 | TTLB p99 | x-cache-status (round 1) | other load on server's CPU |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|"
  printf '%s\n' "${STREAM_ROWS[@]}"
} >"$OUT"

cat "$OUT"
