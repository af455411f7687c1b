//! The figures of a run over its repeats: each metric's mean with a 95% interval, devices'
//! utilization and memory, notes and warnings; as text or as one JSON object.

use crate::ui;
use serde_json::{json, Map, Value};
use wattbench_core::{
    mean_ci, DeviceUse, Measurement, RunMetrics, RunRecord, RunStatus, Stat, Warning,
};

/// The metrics shown, in order: (JSON key, label, unit, decimals).
const SHOWN: &[(&str, &str, &str, usize)] = &[
    ("words_per_s", "words/s", "", 1),
    ("tokens_per_s", "tokens/s", "", 1),
    ("responses_per_s", "responses/s", "", 3),
    ("energy_j", "energy", "J", 1),
    ("avg_power_w", "energy/s (avg power)", "W", 1),
    ("j_per_token", "energy/token", "J", 4),
    ("j_per_response", "energy/response", "J", 3),
    ("j_per_word", "energy/word", "J", 4),
    ("wall_s", "time", "s", 3),
    ("prefill_s", "  prefill", "s", 3),
    ("decode_s", "  decode", "s", 3),
    ("harness_pct", "harness overhead", "%", 2),
    ("accuracy", "accuracy", "", 3),
    ("j_per_correct", "energy/correct answer", "J", 2),
];

/// One stored repeat: its record (with id), window and figures.
pub struct Repeat {
    pub record: RunRecord,
    pub window: Option<Measurement>,
}

fn metric(m: &RunMetrics, key: &str) -> Option<f64> {
    let v = serde_json::to_value(m).ok()?;
    v.get(key)?.as_f64()
}

/// Means and intervals over the complete repeats.
pub fn stats(repeats: &[Repeat]) -> Vec<(&'static str, Option<Stat>)> {
    let metrics: Vec<RunMetrics> = repeats
        .iter()
        .filter(|r| r.record.status == RunStatus::Complete)
        .map(|r| RunMetrics::of(&r.record))
        .collect();
    SHOWN
        .iter()
        .map(|(key, ..)| {
            let values: Vec<Option<f64>> = metrics.iter().map(|m| metric(m, key)).collect();
            (*key, mean_ci(&values))
        })
        .collect()
}

fn devices(repeats: &[Repeat]) -> Vec<DeviceUse> {
    repeats
        .iter()
        .rev()
        .find_map(|r| r.window.as_ref())
        .map(|w| w.devices.iter().map(DeviceUse::of).collect())
        .unwrap_or_default()
}

/// Each node's energy in the last complete repeat, and its energy per output token: the share of
/// a deployment that spans machines (empty when every device is this machine's).
fn nodes(repeats: &[Repeat]) -> Vec<Value> {
    let Some((r, w)) = repeats
        .iter()
        .rev()
        .filter(|r| r.record.status == RunStatus::Complete)
        .find_map(|r| r.window.as_ref().map(|w| (r, w)))
    else {
        return Vec::new();
    };
    let tokens = RunMetrics::of(&r.record).output_tokens;
    wattbench_core::by_node(&w.devices, w.wall_s)
        .into_iter()
        .map(|n| {
            let per_token = n
                .energy_j
                .zip(Some(tokens).filter(|&t| t > 0))
                .map(|(e, t)| e / t as f64);
            let mut v = json!(n);
            v["j_per_token"] = json!(per_token);
            v
        })
        .collect()
}

/// The warnings of the repeats, one per kind and device (the first repeat's figures).
fn warnings(repeats: &[Repeat]) -> Vec<&Warning> {
    let key = |w: &Warning| {
        let v = serde_json::to_value(w).unwrap_or_default();
        (v["kind"].to_string(), v["device"].to_string())
    };
    let mut seen = Vec::new();
    let mut out: Vec<&Warning> = Vec::new();
    for w in repeats
        .iter()
        .filter_map(|r| r.window.as_ref())
        .flat_map(|m| &m.warnings)
    {
        let k = key(w);
        if !seen.contains(&k) {
            seen.push(k);
            out.push(w);
        }
    }
    out
}

/// The run as one JSON object: each metric's mean at the top level (null when unmeasured), its
/// 95% interval under `ci95`, counts, devices, every repeat's own figures, notes and warnings.
pub fn to_json(repeats: &[Repeat], db: &std::path::Path) -> Value {
    let first = repeats.first().map(|r| &r.record);
    let mut obj = Map::new();
    obj.insert("schema".into(), json!("wattbench.run.v1"));
    if let Some(r) = first {
        obj.insert("key".into(), json!(r.key));
        obj.insert("config".into(), json!(r.config));
    }
    let complete: Vec<&Repeat> = repeats
        .iter()
        .filter(|r| r.record.status == RunStatus::Complete)
        .collect();
    obj.insert("repeats".into(), json!(repeats.len()));
    obj.insert("complete_repeats".into(), json!(complete.len()));
    let last = complete.last().map(|r| RunMetrics::of(&r.record));
    for key in ["responses", "output_tokens", "input_tokens", "words"] {
        let v = last
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok()?.get(key).cloned());
        obj.insert(key.into(), v.unwrap_or(Value::Null));
    }
    let mut ci = Map::new();
    for (key, stat) in stats(repeats) {
        obj.insert(key.into(), json!(stat.map(|s| s.mean)));
        ci.insert(key.into(), json!(stat.and_then(|s| s.ci95)));
    }
    obj.insert("ci95".into(), Value::Object(ci));
    obj.insert("devices".into(), json!(devices(repeats)));
    obj.insert("nodes".into(), json!(nodes(repeats)));
    obj.insert(
        "runs".into(),
        repeats
            .iter()
            .map(|r| {
                json!({
                    "id": r.record.id,
                    "repeat": r.record.repeat,
                    "status": r.record.status,
                    "reason": r.record.reason,
                    "measurement_id": r.record.measurement_id,
                    "metrics": RunMetrics::of(&r.record),
                })
            })
            .collect(),
    );
    obj.insert(
        "notes".into(),
        json!(first.map(|r| r.notes.clone()).unwrap_or_default()),
    );
    obj.insert(
        "warnings".into(),
        warnings(repeats)
            .into_iter()
            .map(ui::warning_json)
            .collect(),
    );
    obj.insert("db".into(), json!(db));
    Value::Object(obj)
}

/// The run as text: configuration, figures (mean ± 95% interval), devices, notes, warnings.
pub fn to_text(repeats: &[Repeat], db: &std::path::Path) -> String {
    let mut out = String::new();
    let Some(first) = repeats.first().map(|r| &r.record) else {
        return "no run was made".into();
    };
    let c = &first.config;
    out.push_str(&format!(
        "{} on {} · {} · {} prompts · batch {} · up to {} new tokens · temperature {} top-p {} · {} repeat{}\n\n",
        c.model,
        c.device,
        c.dataset,
        c.num_prompts,
        c.batch_size,
        c.max_new_tokens,
        c.temperature,
        c.top_p,
        repeats.len(),
        if repeats.len() == 1 { "" } else { "s" }
    ));
    if let Some(m) = repeats
        .iter()
        .rev()
        .find(|r| r.record.status == RunStatus::Complete)
        .map(|r| RunMetrics::of(&r.record))
    {
        out.push_str(&format!(
            "{} responses, {} output tokens, {} input tokens, {} words\n",
            m.responses,
            m.output_tokens,
            m.input_tokens,
            m.words.map_or("n/a".into(), |w| w.to_string())
        ));
    }
    let rows: Vec<Vec<String>> = stats(repeats)
        .into_iter()
        .zip(SHOWN)
        .filter(|((key, s), _)| s.is_some() || !matches!(*key, "accuracy" | "j_per_correct"))
        .map(|((_, s), (_, label, unit, digits))| {
            let value = match s {
                None => "n/a".to_string(),
                Some(Stat {
                    mean,
                    ci95: Some(ci),
                    ..
                }) => format!("{mean:.digits$} ± {ci:.digits$}"),
                Some(Stat { mean, .. }) => format!("{mean:.digits$}"),
            };
            vec![label.to_string(), value, unit.to_string()]
        })
        .collect();
    out.push_str(&ui::table(&["metric", "value", "unit"], &rows, 1));
    out.push('\n');
    let devs = devices(repeats);
    if !devs.is_empty() {
        let rows: Vec<Vec<String>> = devs
            .iter()
            .map(|d| {
                vec![
                    d.device.clone(),
                    d.name.clone(),
                    ui::num(d.energy_j, 1),
                    ui::num(d.avg_power_w, 1),
                    ui::num(d.mean_sm_util_pct, 1),
                    ui::num(d.mean_mem_util_pct, 1),
                    ui::gib(d.max_mem_used_bytes),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&ui::table(
            &[
                "device",
                "name",
                "energy J",
                "avg W",
                "SM util %",
                "mem util %",
                "peak mem GiB",
            ],
            &rows,
            2,
        ));
        out.push('\n');
    }
    let nodes = nodes(repeats);
    if !nodes.is_empty() {
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                vec![
                    n["node"].as_str().unwrap_or("").to_string(),
                    n["devices"].to_string(),
                    ui::num(n["energy_j"].as_f64(), 1),
                    ui::num(n["avg_power_w"].as_f64(), 1),
                    ui::num(n["j_per_token"].as_f64(), 4),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&ui::table(
            &["node", "devices", "energy J", "avg W", "J/token"],
            &rows,
            2,
        ));
        out.push('\n');
    }
    if repeats.len() > 1 {
        out.push_str("\n(mean ± 95% confidence interval over the complete repeats)\n");
    }
    for r in repeats
        .iter()
        .filter(|r| r.record.status != RunStatus::Complete)
    {
        out.push_str(&format!(
            "\nrepeat {} {}: {}\n",
            r.record.repeat + 1,
            r.record.status.as_str(),
            r.record.reason.as_deref().unwrap_or("")
        ));
    }
    for n in &first.notes {
        out.push_str(&format!("\n  note: {n}"));
    }
    let ws: Vec<Warning> = warnings(repeats).into_iter().cloned().collect();
    if !ws.is_empty() {
        out.push('\n');
        out.push_str(&ui::warnings(&ws));
    }
    let ids: Vec<String> = repeats
        .iter()
        .filter_map(|r| r.record.id.map(|i| i.to_string()))
        .collect();
    out.push_str(&format!(
        "\n\nstored as run{} {} in {}",
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", "),
        db.display()
    ));
    out
}
