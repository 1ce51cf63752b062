#!/usr/bin/env bash
# Side-by-side benchmark of roar-demucs and the reference PyTorch HTDemucs, same machine, same
# run, same thread count, same input length, random weights of the released htdemucs shape.
# Each case runs in a fresh process (peak RSS is per process), alternating implementations.
#
#   PYTHON=/path/to/venv/bin/python processors/demucs/scripts/bench.sh [threads] [track seconds...]
#
# The Python side needs `pip install demucs==4.0.1 torch==2.11.0 torchaudio==2.11.0`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-python3}
THREADS=${1:-2}
shift || true
LENGTHS=${*:-60 600}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
cargo bench -q -p roar-demucs --bench separate --no-run 2>/dev/null
BIN=$(ls -t target/release/deps/separate-* | grep -v '\.d$' | head -1)
run() {
  "$PYTHON" processors/demucs/scripts/bench_reference.py "$@" --threads "$THREADS"
  "$BIN" "$@" --threads "$THREADS"
}
run --mode segment
for s in $LENGTHS; do run --mode track --seconds "$s"; done
