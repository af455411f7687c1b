//! Errors of sensors and device selection. Each message names the input and the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("unknown sensor {spec:?}; use one of: auto, nvml, rapl[:POWERCAP_ROOT], prometheus:URL[,URL...], fake:WATTS[xN], replay:FILE")]
    UnknownSensor { spec: String },

    #[error("invalid sensor {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },

    #[error(
        "NVIDIA GPU monitoring is unavailable: {reason}. Install the NVIDIA driver (it provides libnvidia-ml.so.1), \
         or choose another sensor (see `wattbench devices`)"
    )]
    NvmlUnavailable { reason: String },

    #[error("NVML found no NVIDIA GPU{detail}")]
    NoGpu { detail: String },

    #[error("CUDA_VISIBLE_DEVICES entry {entry:?} matches no GPU ({available}); fix or unset CUDA_VISIBLE_DEVICES")]
    CudaVisibleDevices { entry: String, available: String },

    #[error("RAPL energy is unavailable at {}: {reason}", root.display())]
    RaplUnavailable { root: PathBuf, reason: String },

    #[error("cannot read replay trace {}: {source}", path.display())]
    ReplayIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("replay trace {}, line {line}, column {column}: {message}", path.display())]
    ReplayParse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("device {selector:?} does not exist ({found}); pass --devices {suggestion}")]
    DeviceNotFound {
        selector: String,
        found: String,
        suggestion: String,
    },

    #[error("device {selector:?} is ambiguous: it matches {matches}; name one of them by id")]
    AmbiguousDevice { selector: String, matches: String },

    #[error("cannot read the metrics at {url}: {reason}")]
    Scrape { url: String, reason: String },

    #[error(
        "{url} serves {metrics} Prometheus samples but no GPU energy or power: enable \
         DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION and DCGM_FI_DEV_POWER_USAGE in dcgm-exporter's \
         counters file, or point at `wattbench meter --listen` on that node"
    )]
    NoEnergyMetrics { url: String, metrics: usize },

    #[error("reading {device} failed: {message}")]
    Read { device: String, message: String },
}
