//! Energy sensors and the background sampler.
//!
//! Sensors collect; everything else (windows, reports) consumes their timelines. Each sensor sits
//! behind the [`EnergySensor`] seam: `nvml` for NVIDIA GPUs (the library is loaded at run time, so
//! the binary runs and explains itself where there is none), `rapl` for CPU package and DRAM
//! energy, `prometheus` for the GPUs of other machines (dcgm-exporter or `wattbench meter`),
//! `fake` for deterministic tests and `replay` to play a recorded trace.

pub mod error;
pub mod fake;
pub mod nvml;
pub mod power;
pub mod prometheus;
pub mod rapl;
pub mod replay;
pub mod sampler;
pub mod select;
pub mod sensor;
pub mod set;
pub mod spec;

pub use error::SensorError;
pub use sampler::{LiveSample, Sampler, SamplerOutput};
pub use sensor::{EnergySensor, ReadKind};
pub use set::SensorSet;
pub use spec::SensorSpec;
