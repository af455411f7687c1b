#!/usr/bin/env bash
# The embedded engine behind `wattbench serve`, driven by `wattbench run --engine openai` as a
# closed loop at concurrency C, against the same engine run offline at batch C: the same model,
# prompts (token-exact synthetic ones), lengths and sampling, one GPU, energy from NVML.
# Usage: bench/serve_vs_offline.sh OUTDIR TOKENIZER_JSON [MODEL] [C] [PROMPTS]
#   defaults: synthetic:llama-7b, 64, 512; prompts of 128 tokens, exactly 256 new tokens.
# Needs: an NVIDIA GPU and wattbench built with `--features cuda` in $WATTBENCH
# (default target/release/wattbench).
set -euo pipefail
out=${1:?usage: serve_vs_offline.sh OUTDIR TOKENIZER_JSON [MODEL] [C] [PROMPTS]}
tok=${2:?a tokenizer.json builds the synthetic prompts}
model=${3:-synthetic:llama-7b}
c=${4:-64}
n=${5:-512}
wb=${WATTBENCH:-target/release/wattbench}
mkdir -p "$out"
common=(--dataset synthetic:in=128,out=256 --tokenizer "$tok" --num-prompts "$n" --max-new-tokens 256
        --ignore-eos --sensor nvml --devices 0 --db "$out/runs.db" --json)
"$wb" serve --model "$model" --device cuda:0 --tokenizer "$tok" --max-batch "$c" --port 0 \
  2> "$out/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do grep -q "http://" "$out/serve.log" && break; sleep 1; done
url=$(grep -o "http://[0-9.:]*" "$out/serve.log" | head -1)
"$wb" run --engine openai --base-url "$url" --model "$model" --batch-size "$c" "${common[@]}" \
  > "$out/served.json" 2> "$out/served.err"
kill $server; wait $server 2>/dev/null || true
"$wb" run --model "$model" --device cuda:0 --batch-size "$c" "${common[@]}" \
  > "$out/offline.json" 2> "$out/offline.err"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
s, o = (json.load(open(f"{d}/{k}.json")) for k in ("served", "offline"))
row = lambda k, v: {"tokens_per_s": v["tokens_per_s"], "avg_power_w": v["avg_power_w"],
                    "j_per_token": v["j_per_token"], "responses": v["responses"], "output_tokens": v["output_tokens"]}
res = {"served": row("served", s), "offline": row("offline", o)}
res["served_over_offline"] = {k: res["served"][k] / res["offline"][k] for k in ("tokens_per_s", "j_per_token")}
sv = s["serving"][0]
res["served_latency_s"] = {k: sv["summary"][k] for k in ("ttft_s", "tpot_s", "e2e_s")}
res["steady_state"] = sv["steady_state"]
res["client_cpu_ms_per_token"] = sv["client_cpu_ms_per_token"]
print(json.dumps(res, indent=1))
json.dump(res, open(f"{d}/compare.json", "w"), indent=1)
PY
