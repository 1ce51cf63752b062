#!/usr/bin/env bash
# CPU of an idle `roar dev` (no uploads, no jobs): the roar process (every role), the tansu
# broker and PostgreSQL, summed over the whole process tree from /proc. Issue 24's target is
# ≤ 5 % of one core in total. Take figures only with nothing else running (`uptime`).
#
#   scripts/idle-cpu.sh [SECONDS] [WARMUP_SECONDS]    # starts its own roar dev, default 30 and 20
#   ROAR_IDLE_PID=1234 scripts/idle-cpu.sh 30          # measures a running roar dev instead
#
# Its own `roar dev` runs the release build (built here if missing) in a temporary
# dev.dir on free ports, with the models in processor.models_dir (default .roar/models) so
# the model workers idle too; it needs the tansu with PostgreSQL storage (scripts/install-tansu.sh).
# `roar dev` pauses idle consumers (kafka.idle_pause_ms, 1000 there): ROAR_KAFKA__IDLE_PAUSE_MS=0
# in the environment measures the stack without the pause, for a before/after pair.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${1:-30}
WARMUP=${2:-20}
for d in /usr/lib/postgresql/*/bin; do PATH=$d:$PATH; done

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), date: $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "${ROAR_IDLE_PID:-}" ]; then
  python3 scripts/cpu-tree.py "$ROAR_IDLE_PID" "$SECONDS_"
  exit
fi

BIN=${ROAR_BIN:-target/release/roar}
# roar refuses unknown ROAR_* settings: its child must not inherit the script's own.
unset ROAR_BIN ROAR_IDLE_PID
[ -x "$BIN" ] || cargo build --release --bin roar
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DIR=$(mktemp -d)
chmod 755 "$DIR" # as root, PostgreSQL runs as `postgres`, which must reach its cluster
LOG=$DIR/roar-dev.log
ROAR_DEV__DIR=$DIR/dev \
ROAR_DEV__KAFKA_PORT=$(free_port) ROAR_DEV__POSTGRES_PORT=$(free_port) \
ROAR_HTTP__ADDR=127.0.0.1:$(free_port) ROAR_HTTP__METRICS_ADDR=127.0.0.1:0 \
ROAR_PROCESSOR__OPS_ADDR=127.0.0.1:0 ROAR_PROJECTOR__OPS_ADDR=127.0.0.1:0 \
ROAR_PIPELINE__OPS_ADDR=127.0.0.1:0 ROAR_TELEMETRY__LOG_LEVEL=warn \
  "$BIN" dev --no-install >"$LOG" 2>&1 &
PID=$!
trap 'kill -INT $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 600); do
  grep -q "roar dev is up" "$LOG" && break
  kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.5
done
grep -q "roar dev is up" "$LOG" || { echo "idle-cpu: roar dev did not come up" >&2; tail "$LOG" >&2; exit 1; }
echo "# roar dev up (pid $PID); idle ${WARMUP} s, then measuring ${SECONDS_} s"
sleep "$WARMUP"
python3 scripts/cpu-tree.py "$PID" "$SECONDS_"
