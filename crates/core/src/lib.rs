//! Pure domain types of wattbench: units, device descriptions, sampled timelines, energy windows,
//! warnings and the measurement record. Nothing here performs I/O, so every rule about how energy
//! is computed can be tested exhaustively without hardware.

pub mod device;
pub mod node;
pub mod record;
pub mod run;
pub mod stats;
pub mod summary;
pub mod timeline;
pub mod units;
pub mod warning;
pub mod window;

pub use device::{Capabilities, DeviceInfo, DeviceKind, PowerLimits};
pub use node::{by_node, NodeEnergy};
pub use record::{DeviceResult, Measurement, Provenance, SamplerStats, SCHEMA_NAME};
pub use run::{
    BatchRecord, DeviceUse, PowerCap, RequestRecord, RunConfig, RunMetrics, RunRecord, RunStatus,
    ServerConfig,
};
pub use stats::{mean_ci, Stat};
pub use summary::{summarize, Summary};
pub use timeline::{DeviceSeries, Point, Reading, Timeline};
pub use units::{Joules, Seconds, Watts};
pub use warning::Warning;
pub use window::{window_energy, EnergyMethod, WindowEnergy, WindowOptions};
