#!/usr/bin/env bash
# Side-by-side benchmark of roar-demucs, the reference PyTorch HTDemucs and the same model
# exported to ONNX by demucs-onnx and run by ONNX Runtime: same machine, same run, same thread
# count, same input length, random weights of the released htdemucs shape. Each case runs in a
# fresh process (peak RSS is per process), alternating implementations.
#
#   PYTHON=/path/to/venv/bin/python processors/demucs/scripts/bench.sh [threads] [track seconds...]
#
# The Python side needs `pip install demucs==4.0.1 torch==2.11.0 torchaudio==2.11.0`; the ONNX
# Runtime side `pip install demucs-onnx==0.3.4 onnx onnxruntime` as well (left out, with a
# note, when the venv lacks them). The ONNX file is exported once (bench_onnx.py export, with
# its PyTorch parity check) to $ONNX_MODEL, default target/demucs-onnx/htdemucs.onnx.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-python3}
THREADS=${1:-2}
shift || true
LENGTHS=${*:-60 600}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
cargo bench -q -p roar-demucs --bench separate --no-run 2>/dev/null
BIN=$(ls -t target/release/deps/separate-* | grep -v '\.d$' | head -1)
ONNX_MODEL=${ONNX_MODEL:-target/demucs-onnx/htdemucs.onnx}
ONNX=1
if ! "$PYTHON" -c 'import demucs_onnx, onnx, onnxruntime' 2>/dev/null; then
  echo "bench: no demucs-onnx/onnx/onnxruntime in $PYTHON: the ONNX Runtime side is left out" >&2
  ONNX=0
elif [ ! -f "$ONNX_MODEL" ]; then
  "$PYTHON" processors/demucs/scripts/bench_onnx.py export --out "$ONNX_MODEL" --threads "$THREADS" >&2
fi
run() {
  "$PYTHON" processors/demucs/scripts/bench_reference.py "$@" --threads "$THREADS"
  [ "$ONNX" = 0 ] || "$PYTHON" processors/demucs/scripts/bench_onnx.py --onnx "$ONNX_MODEL" "$@" --threads "$THREADS"
  "$BIN" "$@" --threads "$THREADS"
}
run --mode segment
for s in $LENGTHS; do run --mode track --seconds "$s"; done
