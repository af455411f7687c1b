#!/usr/bin/env bash
# Sets up a CUDA 13.0 toolchain from PyPI wheels, for building wattbench's `cuda` feature on a
# machine without a GPU or a system CUDA install. Users with a normal CUDA toolkit do not need it:
# `CUDA_COMPUTE_CAP=90 cargo build --release --features cuda` finds /usr/local/cuda.
#
# Usage: scripts/cuda-toolchain.sh [PREFIX]          (default PREFIX: /opt/cu13)
#        source "$PREFIX/env.sh" && cargo build --release --features cuda
#
# nvcc is pinned to 13.0: drivers of the 580 series cannot load PTX from newer compilers, and the
# cudarc release candle uses rejects newer toolkits.
set -euo pipefail
prefix=${1:-/opt/cu13}
python3 -m venv "$prefix"
"$prefix/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
  nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14 nvidia-nccl-cu13==2.28.9
cu=$(echo "$prefix"/lib/python3*/site-packages/nvidia/cu13)
(cd "$cu/lib" && for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done
 ln -sf libcurand.so.10 libcurand.so; ln -sf ../../nccl/lib/libnccl.so.2 libnccl.so)
# No libcuda.so link stub ships on PyPI: make one from cudarc's list of driver functions, so the
# linker is satisfied; the real driver library is loaded on the GPU machine.
cargo fetch --manifest-path "$(dirname "$0")/../Cargo.toml" >/dev/null 2>&1 || true
sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys/mod.rs 2>/dev/null | sort | tail -n 1)
if [ -z "$sys" ]; then
  echo "cudarc's sources are not in the cargo registry; run 'cargo fetch' with the cuda feature enabled first" >&2
  exit 1
fi
grep -ohE "^pub unsafe fn cu[A-Za-z0-9_]+" "$sys" | awk '{print $4}' | sort -u \
  | awk '{print "void " $1 "(void){}"}' > "$cu/cuda_stub.c"
mkdir -p "$cu/lib/stubs"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cu/lib/stubs/libcuda.so" "$cu/cuda_stub.c"
cat > "$prefix/env.sh" <<ENV
export CUDA_HOME=$cu CUDA_ROOT=$cu PATH=$cu/bin:\$PATH CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$cu/lib:$cu/lib/stubs:\${LIBRARY_PATH:-}
ENV
echo "CUDA toolchain ready: source $prefix/env.sh"
