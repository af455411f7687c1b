//! The measurement record: what `wattbench measure` produces, the database stores and exports
//! read back. Field names carry their units; unmeasured quantities are null.

use crate::device::DeviceInfo;
use crate::timeline::Timeline;
use crate::warning::Warning;
use crate::window::EnergyMethod;
use serde::{Deserialize, Serialize};

/// Name of the record schema, written into every JSON export.
pub const SCHEMA_NAME: &str = "wattbench.measurement.v1";

/// One device's figures over a measurement window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceResult {
    #[serde(flatten)]
    pub info: DeviceInfo,
    pub energy_j: Option<f64>,
    pub energy_method: Option<EnergyMethod>,
    /// Counter delta, when the device has a counter.
    pub counter_energy_j: Option<f64>,
    /// Trapezoid of instantaneous power, when the device reports it.
    pub integrated_power_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub peak_power_w: Option<f64>,
    /// Idle power measured before the window (`--idle-baseline`).
    pub idle_power_w: Option<f64>,
    /// `energy_j - idle_power_w * wall_s`: the energy the workload added above idle.
    pub net_energy_j: Option<f64>,
    pub counter_updates: usize,
    pub mean_sm_util_pct: Option<f64>,
    pub mean_mem_util_pct: Option<f64>,
    pub max_mem_used_bytes: Option<u64>,
    pub mean_sm_clock_mhz: Option<f64>,
    pub max_temperature_c: Option<f64>,
}

/// What the sampler cost and how well it kept time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SamplerStats {
    pub interval_s: f64,
    pub samples: u64,
    /// CPU time spent by the sampler thread (user + system).
    pub cpu_s: Option<f64>,
    pub cpu_per_sample_ms: Option<f64>,
    pub overruns: u64,
    pub read_errors: u64,
}

/// Where and with what a record was made.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Provenance {
    pub tool_version: String,
    pub git_sha: String,
    pub host: String,
    pub os: String,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    /// The command line that made the record.
    pub argv: Vec<String>,
}

/// A finished measurement of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Database row id, once stored.
    pub id: Option<i64>,
    /// RFC 3339 times, UTC.
    pub started_at: String,
    pub finished_at: String,
    /// Unix time of the window's start, for aligning with other tools' logs.
    pub started_unix_s: f64,
    pub wall_s: f64,
    pub command: Vec<String>,
    /// The command's exit code; `128 + signal` when a signal ended it.
    pub exit_code: Option<i32>,
    pub energy_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub peak_power_w: Option<f64>,
    pub idle_power_w: Option<f64>,
    pub net_energy_j: Option<f64>,
    pub devices: Vec<DeviceResult>,
    pub warnings: Vec<Warning>,
    pub sampler: SamplerStats,
    /// The validated configuration of the measurement, as given.
    pub config: serde_json::Value,
    pub provenance: Provenance,
    /// The window's start on the timeline's clock.
    pub window_start_s: f64,
    pub timeline: Timeline,
}
