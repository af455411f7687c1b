//! What a sensor can tell about one measured device, and how.

use crate::units::Watts;
use serde::{Deserialize, Serialize};

/// The kind of hardware a device reading belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Gpu,
    CpuPackage,
    Dram,
    /// A device that only exists in a fake or replayed trace.
    Simulated,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Gpu => "gpu",
            DeviceKind::CpuPackage => "cpu_package",
            DeviceKind::Dram => "dram",
            DeviceKind::Simulated => "simulated",
        }
    }
}

/// Which quantities a device's sensor provides. A `false` here means the quantity is recorded as
/// null, never as zero.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// A cumulative energy counter (NVML total energy, RAPL energy_uj).
    pub energy_counter: bool,
    /// Instantaneous power (NVML field 186 on GPUs that have it).
    pub instant_power: bool,
    /// A trailing-average power reading (NVML `nvmlDeviceGetPowerUsage`, a 1 s average on H100).
    /// Recorded for reference, never integrated.
    pub averaged_power: bool,
    /// SM and memory utilization, memory used, SM clock and temperature.
    pub utilization: bool,
    /// Power limits and their bounds can be read.
    pub power_limits: bool,
    /// Value at which the energy counter wraps back to zero, when the hardware declares one
    /// (RAPL `max_energy_range_uj`). NVML's 64-bit millijoule counter does not wrap in practice.
    pub counter_wrap_j: Option<f64>,
}

/// Power-limit settings of a GPU, in watts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerLimits {
    pub current_w: Watts,
    pub default_w: Option<Watts>,
    pub min_w: Option<Watts>,
    pub max_w: Option<Watts>,
}

/// One measured device, as described by its sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Stable identifier within a measurement, such as `gpu0`, `rapl:package-0` or `fake1`.
    pub id: String,
    /// Index among the devices of its kind on this host (the NVML index for GPUs).
    pub index: u32,
    pub kind: DeviceKind,
    /// Which sensor produced the readings (`nvml`, `rapl`, `fake`, `replay`).
    pub sensor: String,
    pub name: String,
    pub uuid: Option<String>,
    pub driver_version: Option<String>,
    pub power_limits: Option<PowerLimits>,
    pub capabilities: Capabilities,
}
