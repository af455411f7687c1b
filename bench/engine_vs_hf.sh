#!/usr/bin/env bash
# The embedded engine on one GPU against the Hugging Face transformers peer, same workload:
# LLaMA-shaped random bf16 weights, prompts of 128 random tokens, exactly 256 new tokens,
# temperature 0.8, top-p 0.95; energy from the NVML counter. Also checks that CPU and CUDA give
# the same greedy tokens for a SmolLM2-shaped synthetic model over 32 steps.
# Usage: bench/engine_vs_hf.sh OUTDIR [PEERS]
#   PEERS: items SIZE:MODE:BATCHES for hf_peer.py, default "7b:static:64,256 13b:eager:64";
#   a bare MODE (eager, static) means 7b:MODE:64.
# Needs: an NVIDIA GPU, python3 with torch, transformers and pynvml, and the engine_bench example
# built with CUDA in $ENGINE_BENCH (default target/release/examples/engine_bench).
set -euo pipefail
out=${1:?usage: engine_vs_hf.sh OUTDIR [PEERS]}
peers=${2:-7b:static:64,256 13b:eager:64}
here=$(cd "$(dirname "$0")" && pwd)
eb=${ENGINE_BENCH:-target/release/examples/engine_bench}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/lib/x86_64-linux-gnu:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$out/gpu.txt"

"$eb" --mode greedy --model synthetic:smollm2-135m --device cpu --steps 32 > "$out/greedy_cpu.json"
"$eb" --mode greedy --model synthetic:smollm2-135m --device cuda --dtype f32 --steps 32 > "$out/greedy_cuda.json"
python3 - "$out" <<'PY'
import json, sys
c = json.load(open(f"{sys.argv[1]}/greedy_cpu.json")); g = json.load(open(f"{sys.argv[1]}/greedy_cuda.json"))
same = c["tokens"] == g["tokens"]
print(json.dumps({"greedy_cpu_equals_cuda": same, "steps": len(c["tokens"][0]), "sequences": len(c["tokens"])}))
PY

"$eb" --model synthetic:llama-7b --device cuda --batch 64,256 | tee -a "$out/engine.jsonl"
"$eb" --model synthetic:llama-13b --device cuda --batch 64 | tee -a "$out/engine.jsonl"
for p in $peers; do
  case "$p" in
    *:*:*) IFS=: read -r size mode batches <<< "$p" ;;
    *) size=7b; mode=$p; batches=64 ;;
  esac
  OUT="$out" python3 "$here/hf_peer.py" "$size" "$mode" "$batches"
done
