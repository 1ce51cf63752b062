#!/usr/bin/env bash
# Times issue 24's first run: the README's run command (`cargo run --release -- dev`) in a fresh
# clone with an empty CARGO_HOME, so the crates, the roar build, the broker install and the
# weight fetch all happen as on a new machine; then one upload and one pitch job, until the job
# is completed. Prints the elapsed time at each milestone. Target: ≤ 15 min in total.
#
#   scripts/first-run.sh [WORKDIR]     # default: a new temporary directory (kept, for the logs)
#
# Needs network to the package registries, ~10 GB of disk, and PostgreSQL's server binaries on
# PATH (the README's prerequisite). Free ports are passed as ROAR_* variables so a running stack
# does not collide; nothing else differs from the README. Run it alone: it is all CPU.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-$(mktemp -d)}
chmod 755 "$W" # as root, PostgreSQL runs as `postgres`, which must reach its cluster
for d in /usr/lib/postgresql/*/bin; do PATH=$d:$PATH; done
mkdir -p "$W/cargo-home"
git clone -q "$SRC" "$W/roar"
export CARGO_HOME=$W/cargo-home
export PATH=$CARGO_HOME/bin:$PATH
cd "$W/roar"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API_PORT=$(free_port)
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# commit: $(git rev-parse --short HEAD), date: $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg), workdir: $W"

START=$(date +%s)
mark() { echo "$(( $(date +%s) - START )) s  $*"; }
ROAR_DEV__KAFKA_PORT=$(free_port) ROAR_DEV__POSTGRES_PORT=$(free_port) \
ROAR_HTTP__ADDR=127.0.0.1:$API_PORT ROAR_HTTP__METRICS_ADDR=127.0.0.1:0 \
ROAR_PROCESSOR__OPS_ADDR=127.0.0.1:0 ROAR_PROJECTOR__OPS_ADDR=127.0.0.1:0 \
ROAR_PIPELINE__OPS_ADDR=127.0.0.1:0 \
  cargo run --release -- dev >dev.log 2>&1 &
DEV=$!
# cargo run execs roar: the signal reaches roar dev, which stops everything it started.
trap 'kill -INT $DEV 2>/dev/null; wait $DEV 2>/dev/null' EXIT

# Milestones, in the order they appear in the log.
for what in "Finished \`release\`" "installing" "fetching the CREPE" "fetching the Whisper" "roar dev is up"; do
  until grep -q "$what" dev.log; do
    if ! kill -0 $DEV 2>/dev/null; then tail -20 dev.log >&2; exit 1; fi
    # A milestone that is skipped (already installed) is passed by the next one.
    grep -q "roar dev is up" dev.log && break
    sleep 1
  done
  grep -q "$what" dev.log && mark "$what"
done

TOKEN=$(sed -n 's/^  dev token  //p' dev.log | head -1)
API=http://127.0.0.1:$API_PORT
FILE=$(curl -sf -H "Authorization: Bearer $TOKEN" -F file=@tests/fixtures/audio/sine.wav "$API/upload" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["file_id"])')
mark "uploaded $FILE"
until curl -sf -H "Authorization: Bearer $TOKEN" "$API/status/$FILE" | grep -q '"status":"ready"'; do sleep 1; done
curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"file_id\":\"$FILE\",\"model\":\"pitch\"}" "$API/process" >/dev/null
mark "pitch job requested"
for _ in $(seq 600); do
  STATUS=$(curl -sf -H "Authorization: Bearer $TOKEN" "$API/status/$FILE")
  if echo "$STATUS" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"]; sys.exit(0 if j and j[0]["status"]=="completed" else 1)'; then
    mark "first job completed (total)"
    exit 0
  fi
  sleep 1
done
echo "first-run: the pitch job did not complete: $STATUS" >&2
exit 1
