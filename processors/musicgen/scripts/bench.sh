#!/usr/bin/env bash
# Side-by-side benchmark of roar-musicgen and transformers' MusicGen: the musicgen-small shape
# with random weights, the same prompt ids, sampling defaults (top-k 250, guidance 3), same
# machine, same run, same thread count; generation seconds per second of audio and peak RSS.
# Each case runs in a fresh process, alternating implementations.
#
#   PYTHON=/path/to/venv/bin/python processors/musicgen/scripts/bench.sh [threads] [seconds...]
#
# The Python side needs `pip install torch==2.11.0 transformers==5.25.0`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-python3}
THREADS=${1:-2}
shift || true
LENGTHS=${*:-10 30}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
cargo bench -q -p roar-musicgen --bench generate --no-run 2>/dev/null
BIN=$(ls -t target/release/deps/generate-* | grep -v '\.d$' | head -1)
for s in $LENGTHS; do
  "$PYTHON" processors/musicgen/scripts/bench_reference.py --seconds "$s" --threads "$THREADS"
  "$BIN" --seconds "$s" --threads "$THREADS"
done
