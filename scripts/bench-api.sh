#!/usr/bin/env bash
# The orchestrator API under load from a separate process (benches/api_load.rs): GET /status,
# POST /process (an existing job; a new job each time, acknowledged by the broker) and N idle
# SSE streams, with the server's CPU seconds and resident memory read from /proc (the server
# process only: tansu and PostgreSQL are its children, the load generator is not). Release
# profile. Take figures only on a quiet machine (`uptime`), and say which.
#
#   scripts/bench-api.sh [REQUESTS] [IN_FLIGHT] [SSE_STREAMS]      # default 20000 32 10000
#   BENCH_OHA=1 scripts/bench-api.sh                                # also `oha` on GET /status
#   BENCH_PROFILE=dev scripts/bench-api.sh 500 8 200                # a smoke run, not a figure
#   BENCH_BIN=target/debug/deps/api_load-<hash> scripts/bench-api.sh  # a binary built already
#
# BENCH_OHA=1 installs oha (`cargo install oha --locked`) when it is not on PATH: an
# independent load generator to cross-check the first row. Needs tansu
# (scripts/install-tansu.sh) and PostgreSQL's server binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
C=${2:-32}
S=${3:-10000}
# Every SSE stream is a socket at both ends.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((S + 1000)) ]; then
  echo "bench-api: open files limit $(ulimit -n) is below $S streams; lower SSE_STREAMS" >&2
  exit 1
fi

. scripts/api-stack.sh
api_stack_start "${BENCH_PROFILE:-bench}"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
TICK=$(getconf CLK_TCK)

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), date: $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $N requests per row, $C in flight, HTTP/1.1 on loopback; server RSS at start $(rss_kib) KiB"
for mode in get post-existing post-new; do
  t0=$(cpu_ticks)
  "$BIN" "$mode" "$BASE" "$TOKEN" "$FILE" "$N" "$C"
  echo "               server CPU: $(( ($(cpu_ticks) - t0) * 1000 / TICK )) ms"
done

if [ "${BENCH_OHA:-0}" = 1 ]; then
  command -v oha >/dev/null || cargo install oha --locked
  oha --no-tui -n "$N" -c "$C" -H "Authorization: Bearer $TOKEN" "$BASE/status/$FILE"
fi

# The server's allocator accounting (one JSON line per `heap` sent to its stdin).
heap() {
  local n
  n=$(grep -c '^{"heap"' "$DIR/serve.out" || true)
  echo heap >&3
  for _ in $(seq 100); do
    [ "$(grep -c '^{"heap"' "$DIR/serve.out" || true)" -gt "$n" ] && break
    sleep 0.1
  done
  grep '^{"heap"' "$DIR/serve.out" | tail -1
}
heap_field() { python3 -c "import json,sys; h=json.loads(sys.argv[1])['heap']; print(h[sys.argv[2]] if h else 0)" "$1" "$2"; }

before=$(rss_kib)
heap_before=$(heap)
"$BIN" sse "$BASE" "$TOKEN" "$SSE_FILE" "$S" 10 >"$DIR/sse.out" 2>&1 &
CLIENT=$!
for _ in $(seq 3000); do
  grep -q '^open' "$DIR/sse.out" && break
  kill -0 $CLIENT 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^open' "$DIR/sse.out"; then
  # The client says which stream was refused and the answer's body; the server's log why.
  cat "$DIR/sse.out" >&2
  echo "bench-api: the server's last errors:" >&2
  grep -i error "$DIR/serve.err" | tail -n 5 >&2 || true
  exit 1
fi
sleep 5 # let every stream send its first event and settle
after=$(rss_kib)
heap_after=$(heap)
wait $CLIENT
cat "$DIR/sse.out"
echo "$S idle SSE streams: server RSS $before -> $after KiB, +$(( after - before )) KiB ($(( (after - before) * 1024 / S )) bytes per stream)"
# Live bytes (heap in use + mmapped blocks) against what the allocator holds free: the part of
# the RSS growth that is data the streams keep, and the part that is the allocator's slack.
live() { echo $(( $(heap_field "$1" in_use) + $(heap_field "$1" mmapped) )); }
echo "  allocator: live $(live "$heap_before") -> $(live "$heap_after") bytes ($(( ($(live "$heap_after") - $(live "$heap_before")) / S )) bytes per stream), free in heap $(heap_field "$heap_before" free) -> $(heap_field "$heap_after" free) bytes"
