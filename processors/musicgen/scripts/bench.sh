#!/usr/bin/env bash
# Side-by-side benchmark of roar-musicgen and transformers' MusicGen: the musicgen-small shape
# with random weights, the same prompt ids, sampling defaults (top-k 250, guidance 3), same
# machine, same run, same thread count; generation seconds per second of audio and peak RSS.
# Each case runs in a fresh process, alternating implementations.
#
#   PYTHON=/path/to/venv/bin/python processors/musicgen/scripts/bench.sh [threads] [seconds...]
#
# The Python side needs `pip install torch==2.11.0 transformers==5.25.0`. The first lines say
# what to copy into docs/benchmarks-musicgen.md's machine fields (CPU, load, commit, date).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-python3}
THREADS=${1:-2}
shift || true
LENGTHS=${*:-10 30}

if ! "$PYTHON" -c 'import torch, transformers' 2>/dev/null; then
  echo "bench.sh: $PYTHON lacks torch/transformers (pip install torch==2.11.0 transformers==5.25.0)" >&2
  exit 1
fi
# The bench binary's path, as cargo reports it (not a guess among stale builds).
BIN=$(cargo bench -q -p roar-musicgen --bench generate --no-run --message-format=json \
  | "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "generate":
        print(m["executable"])
')
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  echo "bench.sh: cargo did not report the generate bench binary" >&2
  exit 1
fi

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores, avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), date: $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# threads: $THREADS, lengths: $LENGTHS"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
for s in $LENGTHS; do
  "$PYTHON" processors/musicgen/scripts/bench_reference.py --seconds "$s" --threads "$THREADS"
  "$BIN" --seconds "$s" --threads "$THREADS"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
