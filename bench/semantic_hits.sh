#!/usr/bin/env bash
# Exact-hit throughput with the semantic tier enabled vs disabled (issue 17:
# "an exact hit never pays for any of it", target ≥ 0.95×).
#
#   ./bench/semantic_hits.sh            # uses target/release/{reprise,mock-upstream}
#
# Starts mock-upstream and two reprise instances that differ only in
# `[semantic] enabled` (memory backend), primes the same request on both (one
# miss each), then runs wrk with bench/post.lua against them in ROUNDS paired
# rounds, alternating which goes first. Prints requests/s per round and the
# median on/off ratio. Knobs: DURATION=10s CONNECTIONS=32 ROUNDS=3 PIN=1
# (servers on SERVER_CPU=0, wrk and the mock on CLIENT_CPU=1), BIN_DIR=target/release.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BIN_DIR=${BIN_DIR:-target/release}
export BENCH_DIR="$ROOT/bench"
BODY="$BENCH_DIR/hit-body.json"
MODEL_DIR=${REPRISE_MODEL_DIR:-$ROOT/models/all-MiniLM-L6-v2}
[[ -f $MODEL_DIR/model.safetensors ]] || ./scripts/fetch-embedding-model.sh

PIN_SERVER=() PIN_CLIENT=()
if [[ $PIN == 1 ]]; then
  PIN_SERVER=(taskset -c "$SERVER_CPU") PIN_CLIENT=(taskset -c "$CLIENT_CPU")
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

MOCK_PORT=$(free_port)
"${PIN_CLIENT[@]}" "$BIN_DIR/mock-upstream" --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
PIDS+=("$!")

declare -A PORT
for name in off on; do
  port=$(free_port)
  enabled=false
  [[ $name == on ]] && enabled=true
  cat >"$WORK/$name.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[cache]
backend = "memory"

[semantic]
enabled = $enabled
model_dir = "$MODEL_DIR"

[routing]
default_provider = "mock"

[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
models = ["*"]
EOF
  RUST_LOG=warn "${PIN_SERVER[@]}" "$BIN_DIR/reprise" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  PORT[$name]=$port
done
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$MOCK_PORT") 2>/dev/null && break; sleep 0.05; done
for name in off on; do
  wait_http "http://127.0.0.1:${PORT[$name]}/health"
  # Prime: one miss stores the entry; the second call must be an exact hit.
  for _ in 1 2; do
    status=$(curl -s -o /dev/null -D - -X POST "http://127.0.0.1:${PORT[$name]}/v1/chat/completions" \
      -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' --data-binary @"$BODY" |
      tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status"{print $2}')
  done
  [[ $status == hit ]] || { echo "$name: priming did not give an exact hit ($status)" >&2; exit 1; }
done

run() { # NAME -> requests/s
  "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/post.lua \
    "http://127.0.0.1:${PORT[$1]}" -- "$BODY" | awk '/^RESULT/{for(i=2;i<=NF;i++){split($i,kv,"=");if(kv[1]=="rps")print kv[2]}}'
}

echo "| round | tier off (req/s) | tier on (req/s) | on/off |"
echo "|---|---|---|---|"
ratios=()
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then off=$(run off); on=$(run on); else on=$(run on); off=$(run off); fi
  ratio=$(python3 -c "print(f'{$on/$off:.3f}')")
  ratios+=("$ratio")
  echo "| $r | $off | $on | $ratio |"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
echo
echo "median on/off ratio: $median (exact hits; $CONNECTIONS connections, $DURATION per run, pinned=$PIN)"
