#!/usr/bin/env bash
# A/B of two reprise binaries against nginx in the same run, unpinned (the
# layout of the load bench's headline): the quick loop for "did this change
# win?" while working on the request path. Full figures: bench/load.sh.
#
#   A=/tmp/reprise-before B=target/release/reprise ./bench/ab.sh
#   A=target/release/reprise B_ENV=REPRISE__SERVER__RUNTIME=multi ./bench/ab.sh   # B defaults to target/release/reprise
#
# Per round, alternating: memory-tier hits (wrk -t2 -c32) on A, B and nginx
# returning the same bytes; misses at one connection (latency) straight to
# the mock, via A, via B and via nginx proxy_pass (keepalive); misses at 32
# connections (throughput) via A, B and nginx. Prints every round and the
# medians of the per-round ratios. Knobs: DURATION=5s ROUNDS=3 CONNECTIONS=32
# THREADS=2 (wrk). Needs wrk, nginx, curl, python3 and the release binaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BENCH_DIR="$PWD/bench"

A=${A:?A=path of the reprise binary before}
B=${B:-target/release/reprise}
A_ENV=${A_ENV:-}  # extra environment of A / B (e.g. TOKIO_WORKER_THREADS=1)
B_ENV=${B_ENV:-}
MOCK_BIN=${MOCK_BIN:-target/release/mock-upstream}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
BODY="$BENCH_DIR/hit-body.json"

work=$(mktemp -d /tmp/reprise-ab.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_url() {
  for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "ab.sh: $1 never answered" >&2
  exit 1
}

"$MOCK_BIN" --listen 127.0.0.1:0 >"$work/mock.out" 2>&1 &
MOCK_PID=$!
pids+=($!)
for _ in $(seq 200); do
  mock=$(sed -n 's/.*listening on http:\/\///p' "$work/mock.out" | head -1)
  [[ -n $mock ]] && break
  sleep 0.05
done

declare -A URL PID
start_reprise() { # name binary env: sets URL[name], PID[name]
  local port
  port=$(free_port)
  cat >"$work/$1.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
[routing]
default_provider = "mock"
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://$mock/v1"
models = ["*"]
EOF
  # shellcheck disable=SC2086
  env RUST_LOG=warn $3 "$2" --config "$work/$1.toml" >"$work/$1.log" 2>&1 &
  PID[$1]=$!
  pids+=($!)
  URL[$1]="http://127.0.0.1:$port"
  wait_url "${URL[$1]}/health"
}
start_reprise a "$A" "$A_ENV"
start_reprise b "$B" "$B_ENV"
a=${URL[a]} b=${URL[b]}
post() { curl -s -o "$work/last.body" -D "$work/last.head" -H 'content-type: application/json' \
  -H 'authorization: Bearer sk-bench' --data-binary "@$BODY" "$1/v1/chat/completions"; }
for url in "$a" "$b"; do
  for _ in $(seq 50); do
    post "$url"
    grep -qi '^x-cache-status: hit' "$work/last.head" && break
    sleep 0.02
  done
  grep -qi '^x-cache-status: hit' "$work/last.head" || { echo "ab.sh: no hit from $url" >&2; exit 1; }
done

start_nginx() { # name location-block: sets URL[name], PID[name] (workers, comma-separated)
  local port dir="$work/nginx-$1"
  port=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes auto;
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
  upstream mock { server $mock; keepalive 64; }
  server {
    listen 127.0.0.1:$port reuseport;
$2
  }
}
EOF
  nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/out" 2>&1 &
  local master=$!
  pids+=("$master")
  URL[$1]="http://127.0.0.1:$port"
  wait_url "${URL[$1]}/"
  PID[$1]=$(pgrep -d, -P "$master")
}
literal=$(sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" "$work/last.body")
start_nginx hit "    location / { default_type application/json; return 200 '$literal'; }"
start_nginx proxy "    location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
ng_hit=${URL[hit]} ng_proxy=${URL[proxy]}

# run NAME URL CONNS PIDS SCRIPT ARGS... -> "rps p50 p99 cpu_us_per_request ctx_switches_per_request"
# (the server's CPU and context switches from `perf stat -p PIDS` over the run)
run() {
  local name=$1 url=$2 conns=$3 pids=$4 script=$5 threads=$THREADS secs
  shift 5
  [[ $conns == 1 ]] && threads=1
  secs=${DURATION%s}
  perf stat -x, -e task-clock,context-switches -p "$pids" -o "$work/$name.perf" -- sleep "$secs" 2>/dev/null &
  local perf_pid=$!
  wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -s "$BENCH_DIR/$script" "$url" -- "$@" \
    >"$work/$name.wrk" 2>&1
  wait "$perf_pid" || true
  awk -F, -v f="$work/$name.perf" '
    FNR == NR && /^RESULT/ {split($0, a, " "); for (i = 2; i in a; i++) {split(a[i], kv, "="); v[kv[1]] = kv[2]}; next}
    FNR != NR && $3 == "task-clock" {cpu = $1}
    FNR != NR && $3 == "context-switches" {cs = $1}
    END {n = v["requests"]; printf "%s %s %s %.1f %.2f\n", v["rps"], v["p50"], v["p99"],
         n ? cpu * 1000 / n : 0, n ? cs / n : 0}' "$work/$name.wrk" "$work/$name.perf"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

declare -a HA HB OA50 OB50 OA99 OB99 TA TB CHA CHB CHN CTA CTB CTN SHA SHB SHN STA STB STN
echo "round | hits A / B / nginx req/s | miss p50 direct / A / B / nginx µs | miss p99 direct / A / B / nginx µs | miss c$CONNECTIONS A / B / nginx req/s"
for r in $(seq "$ROUNDS"); do
  read -r ha _ _ cha sha < <(run "ha$r" "$a" "$CONNECTIONS" "${PID[a]}" post.lua "$BODY")
  read -r hb _ _ chb shb < <(run "hb$r" "$b" "$CONNECTIONS" "${PID[b]}" post.lua "$BODY")
  read -r hn _ _ chn shn < <(run "hn$r" "$ng_hit" "$CONNECTIONS" "${PID[hit]}" post.lua "$BODY")
  read -r _ d50 d99 _ _ < <(run "md$r" "http://$mock" 1 "$MOCK_PID" unique.lua "d$r-$$")
  read -r _ a50 a99 _ _ < <(run "ma$r" "$a" 1 "${PID[a]}" unique.lua "a$r-$$")
  read -r _ b50 b99 _ _ < <(run "mb$r" "$b" 1 "${PID[b]}" unique.lua "b$r-$$")
  read -r _ n50 n99 _ _ < <(run "mn$r" "$ng_proxy" 1 "${PID[proxy]}" unique.lua "n$r-$$")
  read -r ta _ _ cta sta < <(run "ta$r" "$a" "$CONNECTIONS" "${PID[a]}" unique.lua "ta$r-$$")
  read -r tb _ _ ctb stb < <(run "tb$r" "$b" "$CONNECTIONS" "${PID[b]}" unique.lua "tb$r-$$")
  read -r tn _ _ ctn stn < <(run "tn$r" "$ng_proxy" "$CONNECTIONS" "${PID[proxy]}" unique.lua "tn$r-$$")
  echo "$r | ${ha%.*} / ${hb%.*} / ${hn%.*} | $d50 / $a50 / $b50 / $n50 | $d99 / $a99 / $b99 / $n99 | ${ta%.*} / ${tb%.*} / ${tn%.*}"
  nov50=$((n50 - d50 < 1 ? 1 : n50 - d50))
  nov99=$((n99 - d99 < 1 ? 1 : n99 - d99))
  HA+=("$(ratio "$ha" "$hn")") HB+=("$(ratio "$hb" "$hn")")
  OA50+=("$(ratio $((a50 - d50)) "$nov50")") OB50+=("$(ratio $((b50 - d50)) "$nov50")")
  OA99+=("$(ratio $((a99 - d99)) "$nov99")") OB99+=("$(ratio $((b99 - d99)) "$nov99")")
  TA+=("$(ratio "$ta" "$tn")") TB+=("$(ratio "$tb" "$tn")")
  CHA+=("$cha") CHB+=("$chb") CHN+=("$chn") CTA+=("$cta") CTB+=("$ctb") CTN+=("$ctn")
  SHA+=("$sha") SHB+=("$shb") SHN+=("$shn") STA+=("$sta") STB+=("$stb") STN+=("$stn")
done
echo
echo "medians of $ROUNDS rounds (A = $A_ENV $A, B = $B_ENV $B):"
echo "  hits / nginx same bytes:              A $(median "${HA[@]}")  B $(median "${HB[@]}")"
echo "  miss overhead p50 / nginx proxy_pass: A $(median "${OA50[@]}")  B $(median "${OB50[@]}")"
echo "  miss overhead p99 / nginx proxy_pass: A $(median "${OA99[@]}")  B $(median "${OB99[@]}")"
echo "  miss req/s at c$CONNECTIONS / nginx proxy_pass: A $(median "${TA[@]}")  B $(median "${TB[@]}")"
echo "  server CPU µs per hit (perf stat task-clock): A $(median "${CHA[@]}")  B $(median "${CHB[@]}")  nginx $(median "${CHN[@]}")"
echo "  server CPU µs per miss at c$CONNECTIONS:      A $(median "${CTA[@]}")  B $(median "${CTB[@]}")  nginx $(median "${CTN[@]}")"
echo "  context switches per hit:                A $(median "${SHA[@]}")  B $(median "${SHB[@]}")  nginx $(median "${SHN[@]}")"
echo "  context switches per miss at c$CONNECTIONS:   A $(median "${STA[@]}")  B $(median "${STB[@]}")  nginx $(median "${STN[@]}")"
