#!/usr/bin/env bash
# One shard of a tensor-parallel run fails while the others go on: another process holds most of
# the last GPU's memory, so that shard alone runs out of memory allocating its KV cache. The run
# must end promptly with that shard's error (not wait forever in an all-reduce), store the point
# as infeasible, and leave no wattbench process behind.
# Usage: bench/shard_failure.sh OUTDIR [GPUS] [HOG_GB]   GPUS default 0,1; HOG_GB default 40
#   TOKENIZER: a tokenizer.json to build the synthetic prompts from (the model has none);
#   TIMEOUT: seconds before the run is called hung and killed (default 300).
# Needs: 2+ NVIDIA GPUs, python3 with torch, and wattbench built with `--features nccl` in
# $WATTBENCH (default target/release/wattbench).
set -uo pipefail
out=${1:?usage: shard_failure.sh OUTDIR [GPUS] [HOG_GB]}
gpus=${2:-0,1}
hog_gb=${3:-40}
wb=${WATTBENCH:-target/release/wattbench}
mkdir -p "$out"
last=${gpus##*,}
python3 - "$last" "$hog_gb" "$out/hog.ready" <<'PY' &
import sys, time, torch
gpu, gb, ready = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
x = torch.empty(int(gb * 2**30), dtype=torch.uint8, device=f"cuda:{gpu}")
open(ready, "w").write("held\n")
time.sleep(900)
PY
hog=$!
trap 'kill $hog 2>/dev/null || true' EXIT
for _ in $(seq 120); do [ -f "$out/hog.ready" ] && break; sleep 1; done
nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv > "$out/memory-before.csv"
start=$(date +%s.%N)
timeout "${TIMEOUT:-300}" "$wb" run --model synthetic:llama-13b --gpus "$gpus" --dataset synthetic:in=128,out=1024 ${TOKENIZER:+--tokenizer "$TOKENIZER"} \
  --num-prompts 64 --batch-size 64 --max-new-tokens 1024 --ignore-eos --repeats 1 \
  --db "$out/run.db" > "$out/run.out" 2> "$out/run.err"
code=$?
end=$(date +%s.%N)
sleep 2
left=$(pgrep -fc "$wb run" || true)
kill $hog 2>/dev/null || true
wait $hog 2>/dev/null
python3 - "$code" "$start" "$end" "$left" <<'PY' | tee "$out/summary.json"
import json, sys
code, start, end, left = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(json.dumps({"exit_code": code, "timed_out": code == 124, "seconds": round(end - start, 1),
                  "wattbench_processes_left": left}))
PY
tail -5 "$out/run.err"
