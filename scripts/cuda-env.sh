# Sourced by scripts/cuda-check.sh and scripts/gpu-check.sh: a CUDA toolkit without a system
# install. Installs nvcc, the CUDA runtime headers, CCCL, cuBLAS, cuRAND and NVRTC from their
# Python wheels (pinned to CUDA 13.0.x: cudarc 0.19.10, in Cargo.lock, knows CUDA up to 13.2;
# 13.0 is what the 580 drivers run) into a venv and exports CUDA_HOME, PATH and the library
# paths that candle's and cudarc's build scripts read.
# Linking (gpu-check.sh): candle links cudarc with `dynamic-linking`, so the linker wants
# libcuda.so (the driver, which no wheel ships) and unversioned libcublas.so & co. (the wheels
# ship only libcublas.so.13 ...). This script adds both: the links, and a stub libcuda.so
# (soname libcuda.so.1, every driver entry point cudarc declares, each returning an error)
# under lib/stubs, which the linker reads and nothing loads at run time: there the driver's own
# libcuda.so.1 answers.
# Cost: about 1 GB of wheels. CUDA_COMPUTE_CAP picks the PTX target (default 80: A100; 90
# for H100/H200); nothing here queries a GPU.
VENV=${CUDA_VENV:-target/cuda-venv}
CUDA_SERIES=${CUDA_SERIES:-13.0}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/pip" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# nvcc's own dependencies (crt headers, nvvm) are pinned as well: left free, pip pairs the
# 13.0 nvcc with the newest nvvm.
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==${CUDA_SERIES}.*" \
  "nvidia-cuda-crt==${CUDA_SERIES}.*" \
  "nvidia-nvvm==${CUDA_SERIES}.*" \
  "nvidia-cuda-runtime==${CUDA_SERIES}.*" \
  "nvidia-cuda-cccl==${CUDA_SERIES}.*" \
  "nvidia-cublas==${CUDA_SERIES}.*" \
  "nvidia-cuda-nvrtc==${CUDA_SERIES}.*" \
  "nvidia-curand==${CURAND_SERIES:-10.4.0}.*"

# The CUDA 13 wheels install one toolkit tree, site-packages/nvidia/cu13/{bin,include,lib,nvvm}:
# that is the CUDA_HOME. (Wheels lose the executable bit on some tools; lib64 is where some
# build scripts look.)
NVCC=$(find "$VENV" -path '*/nvidia/cu*/bin/nvcc' -type f | head -1)
if [ -z "$NVCC" ]; then
  echo "cuda-env: no nvcc in $VENV after installing the wheels" >&2
  exit 1
fi
HOME_DIR=$(realpath "$(dirname "$(dirname "$NVCC")")")
chmod +x "$HOME_DIR"/bin/* "$HOME_DIR"/nvvm/bin/* 2>/dev/null || true
[ -e "$HOME_DIR/lib64" ] || ln -s lib "$HOME_DIR/lib64"
# Unversioned names for the linker (-lcublas finds libcublas.so only).
for lib in "$HOME_DIR"/lib/lib*.so.*; do
  unversioned=${lib%%.so.*}.so
  [ -e "$unversioned" ] || ln -s "$(basename "$lib")" "$unversioned"
done
# The driver stub, from the entry points cudarc's bindings declare (cargo fetch puts its
# sources in the registry cache; `cargo check` needs them anyway).
if [ ! -e "$HOME_DIR/lib/stubs/libcuda.so" ]; then
  cargo fetch --locked --quiet
  cudarc_version=$(grep -A1 '^name = "cudarc"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
  bindings=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version"/src/driver/sys/mod.rs | head -1)
  mkdir -p "$HOME_DIR/lib/stubs"
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$bindings" | sed 's/^pub unsafe fn //' | sort -u |
    sed 's/.*/int &(void) { return 999; }/' >"$HOME_DIR/lib/stubs/libcuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$HOME_DIR/lib/stubs/libcuda.so" \
    "$HOME_DIR/lib/stubs/libcuda-stub.c"
fi
export CUDA_HOME=$HOME_DIR CUDA_PATH=$HOME_DIR CUDA_ROOT=$HOME_DIR
export PATH=$HOME_DIR/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
export LIBRARY_PATH=$HOME_DIR/lib64:${LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$HOME_DIR/lib64:${LD_LIBRARY_PATH:-}
nvcc --version | tail -2
