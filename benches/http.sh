#!/usr/bin/env bash
# HTTP API throughput and latency: GET / and GET /processes with 10 and 1,000 supervised
# `sleep` processes, against the release binary, from wrk on loopback. Prints a Markdown table.
#
#   benches/http.sh                 # defaults below
#   COUNTS="10 1000" DURATION=10s CONNECTIONS=16 THREADS=1 benches/http.sh
#
# Needs wrk (Debian: apt-get install wrk). The server and wrk share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"10 1000"}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

[ -n "${BIN:-}" ] || cargo build --release --quiet
BIN=${BIN:-target/release/state-manager}
export STATE_MANAGER_JWT_SECRET=${STATE_MANAGER_JWT_SECRET:-bench-secret-0123456789abcdef0123456789}
TOKEN=$("$BIN" token --scope read --ttl 1h --sub bench)
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Milliseconds from a wrk latency figure such as 812.00us, 1.23ms or 1.01s.
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'; }

# run N PATH: one wrk run; prints a table row.
run() {
  local n=$1 path=$2 out rps p50 p99 bytes
  bytes=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$path" | wc -c)
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$path")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "non-2xx answers for $path" >&2; exit 1; fi
  rps=$(echo "$out" | awk '/Requests\/sec/ { printf "%.0f", $2 }')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  printf '| %5s | %-10s | %8s | %6s | %6s | %8s |\n' "$n" "$path" "$rps" "$p50" "$p99" "$bytes"
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| procs | endpoint   |    req/s | p50 ms | p99 ms | body (B) |"
echo "|------:|------------|---------:|-------:|-------:|---------:|"
for n in $COUNTS; do
  echo "load average before $n: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  dir="$WORK/$n"
  mkdir -p "$dir"
  printf '{ "stacks": [ { "name": "s", "command": "sleep", "args": ["100000"], "instances": %d, "stop_timeout": "5s" } ] }\n' "$n" > "$dir/config.json"
  PORT=$(free_port)
  "$BIN" serve --data-dir "$dir" --listen "127.0.0.1:$PORT" >/dev/null 2>"$dir/server.log" &
  SERVER=$!
  for _ in $(seq 600); do
    running=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["processes"]["running"])' 2>/dev/null || echo 0)
    [ "$running" = "$n" ] && break
    sleep 0.1
  done
  [ "$running" = "$n" ] || { echo "only $running of $n processes running" >&2; exit 1; }
  run "$n" /
  run "$n" /processes
  kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""
done
