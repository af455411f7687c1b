# Compares `wattbench measure --json` outputs with an independent NVML sampler log
# (bench/nvml_sampler.py: "unix_time energy_mJ instant_power_mW" every 100 ms) over the same window.
# Usage: compare_sampler.py SAMPLER_LOG MEASURE_JSON...  (prints one JSON line per measurement)
import json, sys

log = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]

def interp(t, i):
    for (ta, *va), (tb, *vb) in zip(log, log[1:]):
        if ta <= t <= tb:
            return va[i] + (vb[i] - va[i]) * (t - ta) / (tb - ta)
    raise SystemExit(f"time {t} is outside the sampler log ({log[0][0]}..{log[-1][0]})")

for path in sys.argv[2:]:
    m = json.loads(open(path).read().strip().splitlines()[-1])
    t0 = m["started_unix_s"]; t1 = t0 + m["wall_s"]
    counter_j = (interp(t1, 0) - interp(t0, 0)) / 1000.0
    pts = [(t, p / 1000.0) for t, _, p in log if t0 <= t <= t1]
    pts = [(t0, interp(t0, 1) / 1000.0)] + pts + [(t1, interp(t1, 1) / 1000.0)]
    trapezoid_j = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))
    d = m["devices"][0]
    print(json.dumps({
        "measurement": path.rsplit("/", 1)[-1],
        "interval_s": m["sampler"]["interval_s"],
        "wall_s": round(m["wall_s"], 3),
        "tool_energy_j": round(m["energy_j"], 1),
        "tool_integrated_power_j": round(d["integrated_power_j"], 1) if d["integrated_power_j"] is not None else None,
        "sampler_counter_j": round(counter_j, 1),
        "sampler_instant_trapezoid_j": round(trapezoid_j, 1),
        "rel_diff_counter": round((m["energy_j"] - counter_j) / counter_j, 5),
        "avg_power_w": round(m["avg_power_w"], 1),
        "peak_power_w": m["peak_power_w"],
        "samples": m["sampler"]["samples"],
        "sampler_cpu_per_sample_ms": m["sampler"]["cpu_per_sample_ms"],
        "overruns": m["sampler"]["overruns"],
        "warnings": [w["kind"] for w in m["warnings"]],
    }))
