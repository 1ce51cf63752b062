# Sourced by the benches that need a running API (scripts/bench-api.sh, scripts/bench-studio.sh):
# `api_stack_start PROFILE` builds benches/api_load.rs in that cargo profile (or takes BENCH_BIN,
# a binary built already) and starts its `serve` mode (tansu in memory and a throw-away
# PostgreSQL as child processes; orchestrator, projector, probe and pipeline manager
# in-process, no model worker; one uploaded song), then sets BIN (the bench binary), SERVER
# (its pid) and BASE, TOKEN, FILE, SSE_FILE (a second song, for idle streams) (from the line
# it prints). The server serves until this shell
# exits (the EXIT trap closes its stdin) and DIR, a temporary folder, is removed then.
# `api_stack_start PROFILE worker` also runs the bench's stand-in pitch worker in the server
# (benches/api_load/job_started.rs) and sets BROKERS.
api_stack_start() {
  for d in /usr/lib/postgresql/*/bin; do PATH=$d:$PATH; done
  BIN=${BENCH_BIN:-}
  [ -n "$BIN" ] || BIN=$(cargo bench -q --profile "$1" --bench api_load --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "api_load":
        print(m["executable"])
')
  [ -x "$BIN" ] || { echo "$0: cargo did not report the api_load bench binary" >&2; exit 1; }
  DIR=$(mktemp -d)
  mkfifo "$DIR/stdin"
  "$BIN" serve ${2:-} <"$DIR/stdin" >"$DIR/serve.out" 2>"$DIR/serve.err" &
  SERVER=$!
  exec 3>"$DIR/stdin" # the server serves until this closes
  trap 'exec 3>&-; wait $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
  for _ in $(seq 1200); do
    grep -q '^{"base"' "$DIR/serve.out" && break
    kill -0 $SERVER 2>/dev/null || { cat "$DIR/serve.err" >&2; exit 1; }
    sleep 0.1
  done
  local line
  line=$(grep -m1 '^{"base"' "$DIR/serve.out") || { echo "$0: the server did not start" >&2; exit 1; }
  field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$line" "$1"; }
  BASE=$(field base) TOKEN=$(field token) FILE=$(field file_id) BROKERS=$(field brokers) SSE_FILE=$(field sse_file_id)
}
