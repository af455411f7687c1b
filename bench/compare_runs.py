# Compares the energy of every complete `wattbench run`/`sweep` run stored in a database with an
# independent NVML sampler log (bench/nvml_sampler.py: "unix_time energy_mJ instant_power_mW"
# every 100 ms) over the same window, and reports the harness's share of each run's wall time.
# Runs whose window is outside the log are skipped. Usage: compare_runs.py SAMPLER_LOG DB
import json, sqlite3, sys

log = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]

def interp(t):
    for (ta, ea, _), (tb, eb, _) in zip(log, log[1:]):
        if ta <= t <= tb:
            return ea + (eb - ea) * (t - ta) / (tb - ta)
    return None

db = sqlite3.connect(sys.argv[2])
rows = db.execute(
    """SELECT r.id, r.model, r.dataset, r.max_new_tokens, r.batch_size, m.started_unix_s, m.wall_s,
              m.energy_j, r.harness_s
       FROM runs r JOIN measurements m ON m.id = r.measurement_id
       WHERE r.status = 'complete' ORDER BY r.id""").fetchall()
worst_diff, worst_harness, n = 0.0, 0.0, 0
for rid, model, dataset, new, batch, t0, wall, energy, harness in rows:
    a, b = interp(t0), interp(t0 + wall)
    if a is None or b is None or energy is None:
        continue
    sampler_j = (b - a) / 1000.0
    diff = (energy - sampler_j) / sampler_j
    harness_pct = 100.0 * harness / wall
    worst_diff, worst_harness, n = max(worst_diff, abs(diff)), max(worst_harness, harness_pct), n + 1
    print(json.dumps({"run": rid, "model": model, "dataset": dataset, "max_new_tokens": new,
                      "batch": batch, "wall_s": round(wall, 3), "tool_energy_j": round(energy, 1),
                      "sampler_counter_j": round(sampler_j, 1), "rel_diff": round(diff, 5),
                      "harness_pct": round(harness_pct, 3)}))
print(json.dumps({"runs_compared": n, "max_abs_rel_diff": round(worst_diff, 5),
                  "max_harness_pct": round(worst_harness, 3)}))
