#!/usr/bin/env bash
# Every model worker once on a GPU: builds processors/examples/gpu_check.rs with candle's CUDA
# backend (release, stripped: one binary, small enough to carry to a GPU machine) and runs
# each model whose weights are under the models dir on cuda:0, twice (the first run includes
# loading the weights), one JSON line per model. The workers run the same `Model::run` as
# `roar processor <model>` with `processor.device = "cuda:0"`.
#
#   scripts/gpu-check.sh             # build, then run (a GPU machine that can also build)
#   scripts/gpu-check.sh build       # here: toolkit from wheels, writes target/gpu-check/gpu_check
#   scripts/gpu-check.sh run [BIN]   # on the GPU machine, with the binary carried there
#
# Environment: ROAR_MODELS_DIR (default .roar/models; fetch the weights first:
# scripts/crepe/fetch-weights.sh, scripts/whisper/fetch-weights.sh, `roar models fetch demucs
# htdemucs`, ...), GPU_CHECK_AUDIO (default the Whisper fixture's English speech),
# GPU_CHECK_DEVICE (default cuda:0), GPU_CHECK_MODELS (default all), CUDA_COMPUTE_CAP for the
# build (default 90: H100/H200). Running needs the NVIDIA driver and the cuBLAS/cuRAND
# libraries on the library path. Take figures only with nothing else on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/gpu-check
BIN=$OUT/gpu_check

build() {
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
  if ! command -v nvcc >/dev/null; then
    # shellcheck source=scripts/cuda-env.sh
    source scripts/cuda-env.sh
  fi
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda-release} \
    cargo build --locked --release -p roar-processors --features cuda --example gpu_check
  mkdir -p "$OUT"
  cp "${CARGO_TARGET_DIR:-target/cuda-release}/release/examples/gpu_check" "$BIN"
  strip "$BIN" 2>/dev/null || true
  echo "gpu-check: built $BIN ($(du -h "$BIN" | cut -f1))"
  # It has to travel to a GPU machine that may be lent with a 64 MiB limit on what it carries.
  if [ "$(stat -c %s "$BIN")" -gt $((64 << 20)) ]; then
    echo "gpu-check: $BIN is over 64 MiB" >&2
    exit 1
  fi
}

run() {
  local bin=${1:-$BIN}
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
  # The binary links the CUDA 13 libraries by soname (libcublas.so.13, libcurand.so.10,
  # libnvrtc.so.13, libcudart.so.13; libcuda.so.1 from the driver). Without a system toolkit,
  # take them from the NVIDIA wheels of the machine's Python (a PyTorch venv has them).
  if ldd "$bin" | grep -q 'not found'; then
    local dirs
    dirs=$(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, d, "lib") for p in nvidia.__path__ for d in sorted(os.listdir(p))))' 2>/dev/null || true)
    for d in $dirs; do
      [ -d "$d" ] && LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
    done
    export LD_LIBRARY_PATH
    if ldd "$bin" | grep 'not found' >&2; then
      echo "gpu-check: CUDA libraries missing (above)" >&2
    fi
  fi
  local models=()
  [ -n "${GPU_CHECK_MODELS:-}" ] && models=(--models "$GPU_CHECK_MODELS")
  "$bin" --device "${GPU_CHECK_DEVICE:-cuda:0}" \
    --models-dir "${ROAR_MODELS_DIR:-.roar/models}" \
    --audio "${GPU_CHECK_AUDIO:-processors/whisper/tests/fixtures/whisper/english.flac}" \
    "${models[@]}"
}

case "${1:-all}" in
  build) build ;;
  run) shift; run "$@" ;;
  all) build; run ;;
  *) echo "usage: $0 [build | run [BIN]]" >&2; exit 2 ;;
esac
