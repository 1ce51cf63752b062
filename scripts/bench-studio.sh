#!/usr/bin/env bash
# The /studio page's load in headless Chromium (sdk/typescript/scripts/bench-studio.mjs): first
# contentful paint, time to interactive, the load event and the JavaScript bytes, cold cache,
# median of RUNS. It starts the real stack the API bench serves (benches/api_load.rs `serve`:
# tansu in memory, a throw-away PostgreSQL, the orchestrator with its embedded studio, one song
# in the list) unless ROAR_STUDIO_URL and ROAR_STUDIO_TOKEN name a running one (`roar dev`
# prints both). Take figures only on a quiet machine (`uptime`), and say which.
#
#   scripts/bench-studio.sh [RUNS]                              # default 5
#   BENCH_PROFILE=dev scripts/bench-studio.sh 1                 # a check that it works, no figure
#   BENCH_BIN=target/release/deps/api_load-<hash> scripts/bench-studio.sh  # a binary built already
#   ROAR_STUDIO_URL=http://127.0.0.1:8080 ROAR_STUDIO_TOKEN=… scripts/bench-studio.sh
#
# Needs Debian's chromium (or ROAR_STUDIO_CHROMIUM), `npm ci` in sdk/typescript, and for the
# stack it starts the in-memory tansu (scripts/install-tansu.sh) and PostgreSQL's server binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
[ -d sdk/typescript/node_modules/playwright-core ] || {
  echo "bench-studio: run \`npm ci\` in sdk/typescript first" >&2
  exit 1
}

BASE=${ROAR_STUDIO_URL:-}
TOKEN=${ROAR_STUDIO_TOKEN:-}
if [ -z "$BASE" ] || [ -z "$TOKEN" ]; then
  . scripts/api-stack.sh
  api_stack_start "${BENCH_PROFILE:-release}"
fi

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), date: $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $BASE/studio/, headless $("${ROAR_STUDIO_CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null || echo chromium), $RUNS cold-cache runs"
(cd sdk/typescript && node scripts/bench-studio.mjs "$BASE" "$TOKEN" "$RUNS")
