#!/usr/bin/env bash
# The paper's shard-count comparison on one machine: LLaMA-65B shape, bf16, tensor-parallel over
# 8 GPUs and over 4 in the same sweep, batch 64/128/256/512, prompts from Alpaca and GSM8K,
# maximum lengths 256/512/1024, each response as long as its dataset's reference answer (random
# weights never end on their own), energy of every GPU used. The sweep is resumable: give the
# database of an earlier call as PREVIOUS_DB to go on where it stopped, within LIMIT_S seconds
# per call. Then the report of everything measured so far.
# Usage: bench/eight_shards.sh OUTDIR TOKENIZER_JSON DATA_DIR [SHARDS] [PROMPTS] [LIMIT_S]
#   SHARDS default 4,8; PROMPTS (per dataset) default 512; LIMIT_S default 540.
# Needs: the GPUs, wattbench built with `--features nccl` in $WATTBENCH (default
# target/release/wattbench), DATA_DIR holding alpaca/alpaca_data.json (GSM8K is bundled).
set -uo pipefail
out=${1:?usage: eight_shards.sh OUTDIR TOKENIZER_JSON DATA_DIR [SHARDS] [PROMPTS] [LIMIT_S]}
tok=${2:?give a tokenizer.json to count the prompt tokens}
data=${3:?give the folder that holds alpaca/alpaca_data.json}
shards=${4:-4,8}
prompts=${5:-512}
limit=${6:-540}
wb=${WATTBENCH:-target/release/wattbench}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,driver_version,power.limit --format=csv > "$out/gpus.csv"
nvidia-smi topo -m > "$out/topology.txt" 2>&1
if [ -n "${PREVIOUS_DB:-}" ] && [ ! -e "$out/sweep.db" ]; then
  cp "$PREVIOUS_DB" "$out/sweep.db"
fi
timeout "$limit" "$wb" sweep --model synthetic:llama-65b --gpus "$shards" --device cuda \
  --dataset alpaca,gsm8k --data-dir "$data" --batch-size 64,128,256,512 \
  --max-new-tokens 256,512,1024 --output-lengths reference --num-prompts "$prompts" \
  --tokenizer "$tok" --raw --sensor nvml --name paper-shards --db "$out/sweep.db" --json \
  > "$out/sweep.json" 2> "$out/sweep.err"
echo "sweep: exit $? (124: stopped by the limit; rerun with PREVIOUS_DB=$out/sweep.db to go on)"
"$wb" report --db "$out/sweep.db" --out "$out/report" > "$out/report.log" 2>&1
echo "report: exit $?"
python3 - "$out/sweep.db" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for cfg, d, n, b, status, e in db.execute(
        "SELECT config_json, dataset, max_new_tokens, batch_size, status, energy_j FROM runs ORDER BY id"):
    print(json.dumps({"gpus": len(json.loads(cfg).get("gpus") or [0]), "dataset": d, "max_new_tokens": n,
                      "batch": b, "status": status, "energy_j": e}))
PY
