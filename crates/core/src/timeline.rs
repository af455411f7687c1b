//! A sampled timeline: per device, readings taken at times measured from the start of sampling.

use serde::{Deserialize, Serialize};

/// One reading of one device. Every field is optional: a quantity the sensor cannot provide is
/// `None` (serialized as null), never zero.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Reading {
    /// Cumulative energy counter, in joules since an arbitrary origin (driver load, boot).
    pub energy_j: Option<f64>,
    /// Instantaneous power.
    pub power_w: Option<f64>,
    /// Trailing-average power as reported by the driver (kept for reference, never integrated).
    pub avg_power_w: Option<f64>,
    pub sm_util_pct: Option<f64>,
    pub mem_util_pct: Option<f64>,
    pub mem_used_bytes: Option<u64>,
    pub sm_clock_mhz: Option<u32>,
    pub temperature_c: Option<f64>,
}

/// A reading at a time, in seconds since the sampler started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub t_s: f64,
    #[serde(flatten)]
    pub reading: Reading,
}

/// The readings of one device, in time order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceSeries {
    pub device_id: String,
    pub points: Vec<Point>,
}

impl DeviceSeries {
    pub fn new(device_id: impl Into<String>) -> Self {
        DeviceSeries {
            device_id: device_id.into(),
            points: Vec::new(),
        }
    }

    /// The points whose time lies in `[t0, t1]`.
    pub fn within(&self, t0: f64, t1: f64) -> impl Iterator<Item = &Point> {
        self.points
            .iter()
            .filter(move |p| p.t_s >= t0 && p.t_s <= t1)
    }

    /// Highest instantaneous power in `[t0, t1]`, if any was read.
    pub fn peak_power_w(&self, t0: f64, t1: f64) -> Option<f64> {
        self.within(t0, t1)
            .filter_map(|p| p.reading.power_w)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    }

    /// Mean of a reading over the points in `[t0, t1]`, if any point has it.
    pub fn mean_of(
        &self,
        t0: f64,
        t1: f64,
        field: impl Fn(&Reading) -> Option<f64>,
    ) -> Option<f64> {
        let (sum, n) = self
            .within(t0, t1)
            .filter_map(|p| field(&p.reading))
            .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| sum / n as f64)
    }

    /// Highest value of a reading over the points in `[t0, t1]`.
    pub fn max_of(&self, t0: f64, t1: f64, field: impl Fn(&Reading) -> Option<f64>) -> Option<f64> {
        self.within(t0, t1)
            .filter_map(|p| field(&p.reading))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    }
}

/// The series of every device measured together, sharing one clock.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub series: Vec<DeviceSeries>,
}

impl Timeline {
    pub fn with_devices<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        Timeline {
            series: ids.into_iter().map(DeviceSeries::new).collect(),
        }
    }

    pub fn device(&self, id: &str) -> Option<&DeviceSeries> {
        self.series.iter().find(|s| s.device_id == id)
    }

    /// Number of sampling instants (the longest series).
    pub fn len(&self) -> usize {
        self.series
            .iter()
            .map(|s| s.points.len())
            .max()
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
