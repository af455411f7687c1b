#!/usr/bin/env bash
# What a power-cap study would set on this machine's GPUs, read from NVML, with nothing changed:
# `wattbench power-limit show`, a `--dry-run` sweep over caps given as shares of the default and as
# watts, a cap below the GPU's lower bound (refused), and nvidia-smi's view of the same limits
# before and after (they must be equal). For GPUs that are not yours to change.
# Usage: bench/power_dry_run.sh OUTDIR [GPUS]      GPUS: NVML indices to cap (default 0)
# Needs: an NVIDIA GPU and wattbench in $WATTBENCH (default target/release/wattbench).
set -uo pipefail
out=${1:?usage: power_dry_run.sh OUTDIR [GPUS]}
gpus=${2:-0}
wb=${WATTBENCH:-target/release/wattbench}
mkdir -p "$out"
query=index,name,uuid,power.limit,enforced.power.limit,power.default_limit,power.min_limit,power.max_limit
nvidia-smi --query-gpu=$query --format=csv > "$out/nvidia-smi-before.csv"
"$wb" power-limit show > "$out/show.txt" 2>&1
echo "show: exit $?" >> "$out/show.txt"
"$wb" sweep --model synthetic:llama-7b --device cuda --num-prompts 512 --power-gpus "$gpus" \
  --power-limit 100%,85%,70%,50%,250 --dry-run > "$out/dry-run.txt" 2>&1
echo "dry run: exit $?" >> "$out/dry-run.txt"
"$wb" sweep --model synthetic:llama-7b --device cuda --num-prompts 512 --power-gpus "$gpus" \
  --power-limit 150 --dry-run > "$out/out-of-bounds.txt" 2>&1
echo "out of bounds: exit $?" >> "$out/out-of-bounds.txt"
"$wb" sweep --model synthetic:llama-7b --device cuda --num-prompts 512 --power-gpus "$gpus" \
  --power-limit 70% > "$out/not-allowed.txt" 2>&1
echo "without --allow-power-changes: exit $?" >> "$out/not-allowed.txt"
nvidia-smi --query-gpu=$query --format=csv > "$out/nvidia-smi-after.csv"
if cmp -s "$out/nvidia-smi-before.csv" "$out/nvidia-smi-after.csv"; then
  echo "limits unchanged" > "$out/unchanged.txt"
else
  echo "LIMITS CHANGED" > "$out/unchanged.txt"
fi
cat "$out"/*.txt "$out/nvidia-smi-after.csv"
