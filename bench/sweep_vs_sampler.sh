#!/usr/bin/env bash
# A `wattbench sweep` on GPU 0 with an independent NVML sampler (bench/nvml_sampler.py) running
# beside it, then every stored run's energy compared with the sampler's counter over the same
# window, and the harness's share of each run's time.
# Usage: bench/sweep_vs_sampler.sh OUTDIR SWEEP_ARGS...
#   The database is OUTDIR/sweep.db: copy an earlier one there to resume a sweep.
# Needs: an NVIDIA GPU, python3 with pynvml, and wattbench built with `--features cuda` in
# $WATTBENCH (default target/release/wattbench).
set -euo pipefail
out=${1:?usage: sweep_vs_sampler.sh OUTDIR SWEEP_ARGS...}
shift
here=$(cd "$(dirname "$0")" && pwd)
wb=${WATTBENCH:-target/release/wattbench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader >> "$out/gpu.txt"
python3 "$here/nvml_sampler.py" "$out/sampler.log" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
sleep 1
status=0
"$wb" sweep --db "$out/sweep.db" "$@" | tee -a "$out/sweep.txt" || status=$?
sleep 1
kill $sampler
python3 "$here/compare_runs.py" "$out/sampler.log" "$out/sweep.db" | tee -a "$out/compare.jsonl"
exit $status
