//! The paper's Table III: how time, energy and token rate change under a lower GPU power limit,
//! relative to the highest limit measured for the same configuration, per output length; and
//! energy against time across limits.

use crate::chart::{Chart, Series};
use crate::data::{Data, Point};
use crate::table::Table;
use wattbench_core::RunStatus;

/// A configuration measured at several limits: (model, dataset, batch, GPUs, max new tokens).
type Group = (String, String, usize, usize, u32);

fn group(p: &Point) -> Group {
    (
        p.config.model.clone(),
        p.config.dataset.clone(),
        p.config.batch_size,
        p.gpus(),
        p.config.max_new_tokens,
    )
}

/// The limit's watts summed over the capped GPUs (the order of limits within a group).
fn watts(p: &Point) -> f64 {
    p.config
        .power_limit
        .as_ref()
        .map_or(f64::NAN, |l| l.limits_w.iter().sum())
}

fn label(p: &Point) -> String {
    let l = p.config.power_limit.as_ref().expect("capped points only");
    let w: Vec<String> = l.limits_w.iter().map(|w| format!("{w:.0}")).collect();
    if l.requested.ends_with('%') {
        format!("{} ({} W)", l.requested, w.join("/"))
    } else {
        format!("{} W", w.join("/"))
    }
}

/// Complete points measured under a power limit, by configuration, highest limit first; only
/// configurations with at least two limits.
fn groups(data: &Data) -> Vec<(Group, Vec<&Point>)> {
    let mut out: Vec<(Group, Vec<&Point>)> = Vec::new();
    for p in data
        .points
        .iter()
        .filter(|p| p.status == RunStatus::Complete && p.config.power_limit.is_some())
    {
        let g = group(p);
        match out.iter_mut().find(|(k, _)| *k == g) {
            Some((_, v)) => v.push(p),
            None => out.push((g, vec![p])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| watts(b).total_cmp(&watts(a)));
    }
    out.retain(|(_, v)| v.len() > 1);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn change(new: Option<f64>, reference: Option<f64>) -> String {
    match (new, reference) {
        (Some(n), Some(r)) if r != 0.0 => format!("{:+.1}", 100.0 * (n - r) / r),
        _ => "n/a".into(),
    }
}

/// Table III, or None when no configuration was measured at two limits or more.
pub fn table(data: &Data) -> Option<Table> {
    let groups = groups(data);
    if groups.is_empty() {
        return None;
    }
    let mut t = Table::new(&[
        "model",
        "dataset",
        "batch",
        "GPUs",
        "max new",
        "limit",
        "reference",
        "time %",
        "energy %",
        "tokens/s %",
        "J/token %",
    ]);
    for ((m, d, b, g, n), points) in groups {
        let reference = points[0];
        for p in &points[1..] {
            let f =
                |p: &Point, which: fn(&wattbench_core::RunMetrics) -> Option<f64>| p.mean(which);
            t.rows.push(vec![
                m.clone(),
                d.clone(),
                b.to_string(),
                g.to_string(),
                n.to_string(),
                label(p),
                label(reference),
                change(f(p, |m| Some(m.wall_s)), f(reference, |m| Some(m.wall_s))),
                change(f(p, |m| m.energy_j), f(reference, |m| m.energy_j)),
                change(f(p, |m| m.tokens_per_s), f(reference, |m| m.tokens_per_s)),
                change(f(p, |m| m.j_per_token), f(reference, |m| m.j_per_token)),
            ]);
        }
    }
    Some(t)
}

/// Energy against time of every configuration measured at several limits: one line each, from
/// the highest limit to the lowest.
pub fn chart(data: &Data, mut caption: Vec<String>) -> Option<Chart> {
    let groups = groups(data);
    if groups.is_empty() {
        return None;
    }
    let mut limits: Vec<String> = Vec::new();
    for (_, points) in &groups {
        for p in points {
            if !limits.contains(&label(p)) {
                limits.push(label(p));
            }
        }
    }
    caption.push(format!(
        "Each line joins one configuration's runs at its limits ({}), highest first",
        limits.join(", ")
    ));
    let series = groups
        .iter()
        .map(|((m, d, b, g, n), points)| Series {
            label: format!(
                "{} · {d} · b{b} · {n} new{}",
                m.strip_prefix("synthetic:").unwrap_or(m),
                if *g > 1 {
                    format!(" · {g} GPUs")
                } else {
                    String::new()
                },
            ),
            points: points
                .iter()
                .filter_map(|p| Some((p.mean(|m| Some(m.wall_s))?, p.mean(|m| m.energy_j)?)))
                .collect(),
        })
        .collect();
    Some(Chart {
        title: "Energy against time across GPU power limits (Table III)".into(),
        caption,
        x_label: "seconds per run".into(),
        y_label: "J per run".into(),
        log_x: false,
        log_y: false,
        series,
    })
}
