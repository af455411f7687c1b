#!/usr/bin/env bash
# Tensor parallelism on one machine's GPUs, with the peers in the same call:
#  1. the LLaMA-65B shape split over N GPUs (batch 64, prompts of 128 tokens, exactly 256 new
#     tokens), the peer workload;
#  2. the 13B shape over 1, 2, ..., N GPUs as a sweep on the same workload;
#  3. the 13B shape over 1, 2, ..., N GPUs on GSM8K prompts at batch 64 and 128 (the paper's
#     shard-count axis), and the report of all of it (figures over shard counts, utilization);
#  4. the peers: HF transformers + accelerate splitting the 65B layers over the same N GPUs, and HF
#     eager on one GPU for the 13B shape.
# Usage: bench/tensor_parallel.sh OUTDIR TOKENIZER_JSON [N] [PEER_BATCH] [PARTS]
#   N default 4; PEER_BATCH 32; PARTS: all (default), engine (1-3) or peer (4).
# Needs: N NVIDIA GPUs, wattbench built with `--features nccl` in $WATTBENCH (default
# target/release/wattbench), and for the peers python3 with torch, transformers, accelerate and
# pynvml, with `hf_pipeline.py` and `hf_peer.py` beside this script (or $PEER_DIR).
set -uo pipefail
out=${1:?usage: tensor_parallel.sh OUTDIR TOKENIZER_JSON [N] [PEER_BATCH] [PARTS]}
tok=${2:?a tokenizer.json builds the synthetic prompts}
n=${3:-4}
peer_batch=${4:-32}
parts=${5:-all}
here=$(cd "$(dirname "$0")" && pwd)
wb=${WATTBENCH:-target/release/wattbench}
peers=${PEER_DIR:-$here}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,driver_version,power.limit --format=csv > "$out/gpus.csv"
nvidia-smi topo -m > "$out/topology.txt" 2>&1
common=(--tokenizer "$tok" --max-new-tokens 256 --ignore-eos --sensor nvml --raw --json --db "$out/runs.db")
peer_load=(--dataset synthetic:in=128,out=256 "${common[@]}")
shards=1; k=2
while [ "$k" -le "$n" ]; do shards="$shards,$k"; k=$((k * 2)); done
if [ "$parts" != peer ]; then
  timeout 150 "$wb" run --model synthetic:llama-65b --tensor-parallel "$n" --num-prompts 64 --batch-size 64 \
    --repeats 1 "${peer_load[@]}" > "$out/65b.json" 2> "$out/65b.err"
  echo "65b: exit $?"
  timeout 150 "$wb" sweep --model synthetic:llama-13b --gpus "$shards" --device cuda --num-prompts 128 \
    --batch-size 64 --name "13b-tp" "${peer_load[@]}" > "$out/13b.json" 2> "$out/13b.err"
  echo "13b sweep over $shards GPUs: exit $?"
  timeout 200 "$wb" sweep --model synthetic:llama-13b --gpus "$shards" --device cuda --num-prompts 128 \
    --batch-size 64,128 --dataset gsm8k --name "13b-tp-gsm8k" "${common[@]}" \
    > "$out/13b-gsm8k.json" 2> "$out/13b-gsm8k.err"
  echo "13b GSM8K sweep over $shards GPUs: exit $?"
  "$wb" report --db "$out/runs.db" --out "$out/report" > "$out/report.log" 2>&1
  echo "report: exit $?"
fi
if [ "$parts" != engine ]; then
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True OUT="$out" timeout 260 python3 "$peers/hf_pipeline.py" 65b \
    "$peer_batch" > "$out/peer.out" 2> "$out/peer.err"
  echo "peer (65b layer split): exit $?"
  OUT="$out" timeout 120 python3 "$peers/hf_peer.py" 13b eager 64 > "$out/peer13.out" 2> "$out/peer13.err"
  echo "peer (13b eager): exit $?"
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
for f in ("13b.json", "13b-gsm8k.json"):
    for p in load(f).get("points", []):
        print(json.dumps({"sweep": f, **p["point"], **{k: p.get(k) for k in ("tokens_per_s", "avg_power_w", "j_per_token")}}))
PY
tail -qn1 "$out/peer.out" "$out/peer13.out" 2>/dev/null
