//! What a report shows, read from the database alone: one point per configuration (its complete
//! repeats aggregated), in a fixed order that does not depend on row ids or insertion order.

use crate::ReportError;
use std::collections::BTreeMap;
use wattbench_core::{
    DeviceKind, DeviceUse, Measurement, RunConfig, RunMetrics, RunRecord, RunStatus,
};
use wattbench_store::Store;

/// One configuration over its repeats.
pub struct Point {
    pub config: RunConfig,
    /// Complete when a repeat completed; else the last repeat's status.
    pub status: RunStatus,
    pub reason: Option<String>,
    /// Figures of the complete repeats.
    pub metrics: Vec<RunMetrics>,
    /// Devices of the last complete repeat's window.
    pub devices: Vec<DeviceUse>,
    /// The window of the complete repeat that ran longest, for the power timeline.
    pub longest: Option<(f64, i64)>,
}

impl Point {
    /// The mean of a figure over the complete repeats, where each has it.
    pub fn mean(&self, f: impl Fn(&RunMetrics) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.metrics.iter().filter_map(f).collect();
        (!v.is_empty() && v.len() == self.metrics.len())
            .then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// GPUs measured (the shard count of the run).
    pub fn gpus(&self) -> usize {
        self.devices.len()
    }
}

pub struct Data {
    pub points: Vec<Point>,
    /// Device names of the measured runs, e.g. "NVIDIA H100 80GB HBM3".
    pub cards: Vec<String>,
    /// Tool versions that made the runs, e.g. "0.1.0 (git ab023fd)".
    pub tools: Vec<String>,
    /// Start (on the timeline's clock) and length of every measured window, by measurement id.
    pub windows: BTreeMap<i64, (f64, f64)>,
}

/// Reads every run of `store` and groups them by configuration.
pub fn load(store: &Store) -> Result<Data, ReportError> {
    let runs = store.runs(true)?;
    if runs.is_empty() {
        return Err(ReportError::Empty {
            db: store.path().to_path_buf(),
        });
    }
    let measurements: BTreeMap<i64, Measurement> = store
        .measurements(false)?
        .into_iter()
        .filter_map(|m| m.id.map(|id| (id, m)))
        .collect();
    let mut by_key: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for r in runs {
        by_key.entry(r.key.clone()).or_default().push(r);
    }
    let mut cards = Vec::new();
    let mut tools = Vec::new();
    let mut points = Vec::new();
    for (_, mut runs) in by_key {
        runs.sort_by_key(|r| r.repeat);
        let complete: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.status == RunStatus::Complete)
            .collect();
        let last = runs.last().expect("a key has at least one run");
        let windows: Vec<&Measurement> = complete
            .iter()
            .filter_map(|r| r.measurement_id.and_then(|id| measurements.get(&id)))
            .collect();
        for m in &windows {
            for d in m
                .devices
                .iter()
                .filter(|d| d.info.kind == DeviceKind::Gpu || d.info.kind == DeviceKind::Simulated)
            {
                if !cards.contains(&d.info.name) {
                    cards.push(d.info.name.clone());
                }
            }
            let tool = format!(
                "{} (git {})",
                m.provenance.tool_version, m.provenance.git_sha
            );
            if !tools.contains(&tool) {
                tools.push(tool);
            }
        }
        let longest = complete
            .iter()
            .filter_map(|r| r.measurement_id.map(|id| (r.wall_s, id)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        points.push(Point {
            config: last.config.clone(),
            status: if complete.is_empty() {
                last.status
            } else {
                RunStatus::Complete
            },
            reason: if complete.is_empty() {
                last.reason.clone()
            } else {
                None
            },
            metrics: complete.iter().map(|r| RunMetrics::of(r)).collect(),
            devices: windows
                .last()
                .map(|m| m.devices.iter().map(DeviceUse::of).collect())
                .unwrap_or_default(),
            longest,
        });
    }
    points.sort_by(|a, b| {
        let ka = (
            &a.config.model,
            &a.config.dataset,
            a.config.max_new_tokens,
            a.config.batch_size,
            a.gpus(),
        );
        let kb = (
            &b.config.model,
            &b.config.dataset,
            b.config.max_new_tokens,
            b.config.batch_size,
            b.gpus(),
        );
        ka.cmp(&kb)
            .then_with(|| a.config.key().cmp(&b.config.key()))
    });
    cards.sort();
    tools.sort();
    let windows = measurements
        .iter()
        .map(|(id, m)| (*id, (m.window_start_s, m.wall_s)))
        .collect();
    Ok(Data {
        points,
        cards,
        tools,
        windows,
    })
}
