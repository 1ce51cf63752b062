#!/usr/bin/env bash
# POST /process → the worker's JobStarted (issue 24's "p99 ≤ 10 ms"), from another process
# (benches/api_load.rs, mode job-started): REQUESTS new pitch jobs, IN_FLIGHT of them between
# request and JobStarted at any time, against the bench stack with a pitch worker whose model
# answers at once (the real worker runtime and consumer loop; the model's own time is in its
# own benchmark). Prints the run's line (jobs/s, p50/p99/max from request to JobStarted seen)
# and the split: the 202 answer, JobStarted seen on the topic here, and the time the worker
# stamped on it. Release profile. Take figures only on a quiet machine (`uptime`).
#
#   scripts/bench-job-started.sh [REQUESTS] [IN_FLIGHT]       # default 5000 32
#   BENCH_PROFILE=dev scripts/bench-job-started.sh 200 8     # a smoke run, not a figure
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
C=${2:-32}

. scripts/api-stack.sh
api_stack_start "${BENCH_PROFILE:-bench}" worker

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), date: $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $N new pitch jobs, $C in flight (request sent → JobStarted seen), HTTP/1.1 on loopback"
"$BIN" job-started "$BASE" "$TOKEN" "$FILE" "$BROKERS" "$N" "$C"
