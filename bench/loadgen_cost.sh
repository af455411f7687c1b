#!/usr/bin/env bash
# What a load generator costs: `wattbench run --engine openai` and GuideLLM against the same fast
# scripted server on loopback (crates/openai/examples/scripted_server.rs, no model: every token is
# an SSE event), same concurrency, requests and lengths. First with no gap between tokens (the
# most tokens per second each client can take, and its CPU seconds per token), then with tokens
# 1 ms apart (its inter-token latency should read 1 ms).
# Usage: bench/loadgen_cost.sh OUTDIR TOKENIZER_DIR [CONCURRENCY] [REQUESTS] [TOKENS]
#   defaults 64, 2000, 256. TOKENIZER_DIR holds a tokenizer.json (GuideLLM builds its prompts with it).
# Needs: $WATTBENCH (default target/release/wattbench), $SCRIPTED (default
# target/release/examples/scripted_server) and $GUIDELLM (default guidellm; `pip install guidellm`).
set -uo pipefail
out=${1:?usage: loadgen_cost.sh OUTDIR TOKENIZER_DIR [CONCURRENCY] [REQUESTS] [TOKENS]}
tokdir=${2:?a folder with tokenizer.json}
c=${3:-64}
n=${4:-2000}
tokens=${5:-256}
wb=${WATTBENCH:-target/release/wattbench}
scripted=${SCRIPTED:-target/release/examples/scripted_server}
gl=${GUIDELLM:-guidellm}
mkdir -p "$out"
nproc > "$out/cores.txt"
for gap in 0 1000; do
  port=$((8800 + gap / 1000))
  "$scripted" --port "$port" --gap-us "$gap" 2>/dev/null &
  server=$!
  sleep 1
  /usr/bin/time -f "%e %U %S" -o "$out/wattbench-gap$gap.time" \
    "$wb" run --engine openai --base-url "http://127.0.0.1:$port" --model scripted \
    --dataset "synthetic:in=32,out=$tokens" --tokenizer "$tokdir/tokenizer.json" --num-prompts "$n" \
    --max-concurrency "$c" --max-new-tokens "$tokens" --ignore-eos --warmup 0 --sensor fake:1 \
    --db "$out/runs.db" --json > "$out/wattbench-gap$gap.json" 2> "$out/wattbench-gap$gap.err"
  (cd "$out" && /usr/bin/time -f "%e %U %S" -o "guidellm-gap$gap.time" \
    "$gl" run --backend "kind=openai_http,target=http://127.0.0.1:$port,model=scripted" \
    --profile "kind=concurrent,streams=$c" --data "kind=synthetic_text,prompt_tokens=32,output_tokens=$tokens" \
    --tokenizer "kind=hf_auto,model=$tokdir" --constraint "kind=max_requests,count=$n" \
    --output "kind=json,path=guidellm-gap$gap.json" --disable-console-interactive > "guidellm-gap$gap.log" 2>&1)
  kill $server
done
python3 - "$out" "$tokens" <<'PY'
import json, sys
d, tokens = sys.argv[1], int(sys.argv[2])
def cpu(f):
    wall, user, sys_ = map(float, open(f"{d}/{f}").read().split())
    return wall, user + sys_
rows = {}
for gap in (0, 1000):
    w = json.load(open(f"{d}/wattbench-gap{gap}.json")); s = w["serving"][0]["summary"]
    wall, c = cpu(f"wattbench-gap{gap}.time")
    rows[f"wattbench gap {gap} us"] = {"output_tokens": s["output_tokens"], "tokens_per_s": s["output_tokens_per_s"],
        "process_cpu_s": c, "cpu_ms_per_token": 1e3 * c / s["output_tokens"],
        "window_cpu_ms_per_token": w["serving"][0]["client_cpu_ms_per_token"],
        "itl_p50_ms": 1e3 * s["itl_s"]["p50"], "itl_p99_ms": 1e3 * s["itl_s"]["p99"], "failures": s["failures"]}
    try:
        g = json.load(open(f"{d}/guidellm-gap{gap}.json"))
        b = g["benchmarks"][0]; m = b["metrics"]
        out_tok = m["output_token_count"]["successful"]["total_sum"]
        tps = out_tok / b["duration"]
        itl = m["inter_token_latency_ms"]["successful"]
        wall, c = cpu(f"guidellm-gap{gap}.time")
        rows[f"guidellm gap {gap} us"] = {"output_tokens": out_tok, "tokens_per_s": tps, "process_cpu_s": c,
            "cpu_ms_per_token": 1e3 * c / out_tok, "itl_p50_ms": itl["median"], "itl_p99_ms": itl["percentiles"]["p99"]}
    except Exception as e:
        rows[f"guidellm gap {gap} us"] = {"error": repr(e)}
print(json.dumps(rows, indent=1))
json.dump(rows, open(f"{d}/compare.json", "w"), indent=1)
PY
