#!/usr/bin/env bash
# Tensor parallelism on one machine's GPUs: the LLaMA-65B shape split over N GPUs (batch 64,
# prompts of 128 tokens, exactly 256 new tokens), the 13B shape over 1, 2, ..., N GPUs as a
# sweep, then the HF transformers + accelerate layer-split peer on the same GPUs.
# Usage: bench/tensor_parallel.sh OUTDIR TOKENIZER_JSON [N] [PEER_BATCH] [PARTS]
#   N default 4; PEER_BATCH 32; PARTS: all (default), engine (the two wattbench runs) or peer, so the
#   parts can run as separate calls of a time-limited machine.
# Needs: N NVIDIA GPUs, wattbench built with `--features nccl` in $WATTBENCH (default
# target/release/wattbench), and for the peer python3 with torch, transformers, accelerate and
# pynvml and `hf_pipeline.py` in $PEER (default: beside this script).
set -uo pipefail
out=${1:?usage: tensor_parallel.sh OUTDIR TOKENIZER_JSON [N] [PEER_BATCH] [PARTS]}
tok=${2:?a tokenizer.json builds the synthetic prompts}
n=${3:-4}
peer_batch=${4:-32}
parts=${5:-all}
here=$(cd "$(dirname "$0")" && pwd)
wb=${WATTBENCH:-target/release/wattbench}
peer=${PEER:-$here/hf_pipeline.py}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,driver_version,power.limit --format=csv > "$out/gpus.csv"
nvidia-smi topo -m > "$out/topology.txt" 2>&1
common=(--dataset synthetic:in=128,out=256 --tokenizer "$tok" --max-new-tokens 256 --ignore-eos
        --sensor nvml --raw --json)
if [ "$parts" != peer ]; then
  timeout 330 "$wb" run --model synthetic:llama-65b --tensor-parallel "$n" --num-prompts 64 --batch-size 64 \
    --repeats 1 --db "$out/runs.db" "${common[@]}" > "$out/65b.json" 2> "$out/65b.err"
  echo "65b: exit $?"
  shards=1; k=2
  while [ "$k" -le "$n" ]; do shards="$shards,$k"; k=$((k * 2)); done
  timeout 200 "$wb" sweep --model synthetic:llama-13b --gpus "$shards" --device cuda --num-prompts 128 \
    --batch-size 64 --name "13b-tp" --db "$out/runs.db" "${common[@]}" > "$out/13b.json" 2> "$out/13b.err"
  echo "13b sweep over $shards GPUs: exit $?"
fi
if [ "$parts" != engine ]; then
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True OUT="$out" timeout 280 python3 "$peer" 65b "$peer_batch" \
    > "$out/peer.out" 2> "$out/peer.err"
  echo "peer: exit $?"
fi
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
def load(f):
    try: return json.load(open(f"{d}/{f}"))
    except Exception as e: return {"error": str(e)}
r = load("65b.json")
print(json.dumps({k: r.get(k) for k in ("tokens_per_s", "avg_power_w", "j_per_token", "j_per_response", "output_tokens")}))
for dev in r.get("devices", []): print(json.dumps(dev))
s = load("13b.json")
for p in s.get("points", []):
    print(json.dumps({"gpus": p["point"]["gpus"], **{k: p.get(k) for k in ("tokens_per_s", "avg_power_w", "j_per_token")}}))
PY
cat "$out/peer.out" 2>/dev/null | tail -1
