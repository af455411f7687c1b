//! CSV and JSON export of stored measurements.

use crate::error::StoreError;
use serde_json::json;
use std::io::Write;
use wattbench_core::{Measurement, SCHEMA_NAME};

/// Export formats of `wattbench export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// The JSON document: the schema name and every measurement, timelines included when loaded.
pub fn to_json(measurements: &[Measurement]) -> serde_json::Value {
    json!({ "schema": SCHEMA_NAME, "measurements": measurements })
}

const DEVICE_COLUMNS: &[&str] = &[
    "measurement_id",
    "started_at",
    "finished_at",
    "command",
    "exit_code",
    "wall_s",
    "total_energy_j",
    "total_avg_power_w",
    "total_peak_power_w",
    "device_id",
    "device_kind",
    "device_name",
    "device_uuid",
    "energy_j",
    "energy_method",
    "counter_energy_j",
    "integrated_power_j",
    "avg_power_w",
    "peak_power_w",
    "idle_power_w",
    "net_energy_j",
    "mean_sm_util_pct",
    "mean_mem_util_pct",
    "max_mem_used_bytes",
    "max_temperature_c",
    "power_limit_w",
    "warnings",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn csv_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Export(e.to_string())
}

/// One row per device per measurement (a measurement without devices still gets one row). Empty
/// cells are quantities that were not measured.
pub fn write_csv(measurements: &[Measurement], out: impl Write) -> Result<(), StoreError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(DEVICE_COLUMNS).map_err(csv_err)?;
    for m in measurements {
        let command = m.command.join(" ");
        let warnings = m
            .warnings
            .iter()
            .map(|w| w.kind())
            .collect::<Vec<_>>()
            .join(";");
        let head = [
            opt(m.id),
            m.started_at.clone(),
            m.finished_at.clone(),
            command,
            opt(m.exit_code),
            m.wall_s.to_string(),
            opt(m.energy_j),
            opt(m.avg_power_w),
            opt(m.peak_power_w),
        ];
        if m.devices.is_empty() {
            let mut row: Vec<String> = head.to_vec();
            row.resize(DEVICE_COLUMNS.len() - 1, String::new());
            row.push(warnings.clone());
            w.write_record(&row).map_err(csv_err)?;
        }
        for d in &m.devices {
            let mut row: Vec<String> = head.to_vec();
            row.extend([
                d.info.id.clone(),
                d.info.kind.as_str().to_string(),
                d.info.name.clone(),
                d.info.uuid.clone().unwrap_or_default(),
                opt(d.energy_j),
                d.energy_method
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
                opt(d.counter_energy_j),
                opt(d.integrated_power_j),
                opt(d.avg_power_w),
                opt(d.peak_power_w),
                opt(d.idle_power_w),
                opt(d.net_energy_j),
                opt(d.mean_sm_util_pct),
                opt(d.mean_mem_util_pct),
                opt(d.max_mem_used_bytes),
                opt(d.max_temperature_c),
                opt(d.info.power_limits.map(|p| p.current_w.0)),
                warnings.clone(),
            ]);
            w.write_record(&row).map_err(csv_err)?;
        }
    }
    w.flush().map_err(csv_err)
}

/// The sampled timelines, one row per device per sample.
pub fn write_timeline_csv(measurements: &[Measurement], out: impl Write) -> Result<(), StoreError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "measurement_id",
        "device_id",
        "t_s",
        "energy_j",
        "power_w",
        "avg_power_w",
        "sm_util_pct",
        "mem_util_pct",
        "mem_used_bytes",
        "sm_clock_mhz",
        "temperature_c",
    ])
    .map_err(csv_err)?;
    for m in measurements {
        for s in &m.timeline.series {
            for p in &s.points {
                let r = &p.reading;
                w.write_record([
                    opt(m.id),
                    s.device_id.clone(),
                    p.t_s.to_string(),
                    opt(r.energy_j),
                    opt(r.power_w),
                    opt(r.avg_power_w),
                    opt(r.sm_util_pct),
                    opt(r.mem_util_pct),
                    opt(r.mem_used_bytes),
                    opt(r.sm_clock_mhz),
                    opt(r.temperature_c),
                ])
                .map_err(csv_err)?;
            }
        }
    }
    w.flush().map_err(csv_err)
}
