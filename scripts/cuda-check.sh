#!/usr/bin/env bash
# Compile check of the `cuda` feature without a GPU or a system CUDA toolkit: installs nvcc,
# the CUDA runtime headers, CCCL and cuBLAS from their Python wheels (pinned to CUDA 13.0.x:
# cudarc 0.19.10, in Cargo.lock, knows CUDA up to 13.2) into a venv, then runs
# `cargo check --features cuda` for the processors (every model crate's candle code, and
# candle's CUDA kernels compiled to PTX by that nvcc). Running needs a GPU machine.
#
#   scripts/cuda-check.sh            # venv in target/cuda-venv, separate target/cuda-check dir
#
# The toolkit comes from scripts/cuda-env.sh. Cost: about 1 GB of wheels (the venv), plus a
# check build of the dependency tree with the cuda feature in its own target dir (tens of
# minutes on 2 cores). Not part of .ci/run.
# CUDA_COMPUTE_CAP picks the PTX target (default 80); nothing here queries a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh

CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda-check} \
  cargo check --locked -p roar-processors --features cuda --all-targets
echo "cuda-check: the cuda feature compiles (CUDA ${CUDA_SERIES}, compute ${CUDA_COMPUTE_CAP})"
