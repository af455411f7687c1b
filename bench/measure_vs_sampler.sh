#!/usr/bin/env bash
# Cross-checks `wattbench measure` against an independent NVML sampler on GPU 0, at 100 ms and
# 10 ms sampling, and records the sampler's CPU cost per sample.
# Usage: bench/measure_vs_sampler.sh OUTDIR [SECONDS]
# Needs: python3 with torch and pynvml, an NVIDIA GPU, and the wattbench binary in $WATTBENCH
# (default: target/release/wattbench).
set -euo pipefail
out=${1:?usage: measure_vs_sampler.sh OUTDIR [SECONDS]}
secs=${2:-10}
here=$(cd "$(dirname "$0")" && pwd)
wb=${WATTBENCH:-target/release/wattbench}
mkdir -p "$out"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu
"$wb" --version | tee "$out/version.txt"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$out/gpu.txt"
"$wb" devices --json > "$out/devices.json"
python3 "$here/nvml_sampler.py" "$out/sampler.log" & sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
sleep 2
# Warm-up: the first CUDA process on a fresh machine loads the driver state.
python3 "$here/gpu_load.py" 2
sleep 2
for iv in 100ms 10ms; do
  "$wb" measure --sensor nvml --devices 0 --interval $iv --json --db "$out/bench.db" -- \
    python3 "$here/gpu_load.py" "$secs" > "$out/measure_$iv.json"
  sleep 3
done
# Sampler cost on an idle GPU, where nothing else competes for the CPU.
"$wb" measure --sensor nvml --devices 0 --interval 10ms --json --db "$out/bench.db" -- sleep 5 > "$out/idle_10ms.json"
sleep 1
kill $sampler; trap - EXIT
python3 "$here/compare_sampler.py" "$out/sampler.log" "$out"/measure_*.json "$out/idle_10ms.json" | tee "$out/compare.jsonl"
