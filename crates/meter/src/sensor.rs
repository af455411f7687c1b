//! The seam every energy source implements.

use crate::error::SensorError;
use wattbench_core::{DeviceInfo, Reading, Warning};

/// Why a reading is taken. Some counters are costly to read (NVML's energy counter costs about
/// 4 ms of CPU on an H100 and changes only every ~100 ms), so periodic ticks may skip them, while
/// window edges always read everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// A periodic sample; a sensor may leave out quantities that cannot have changed since.
    Tick,
    /// The edge of a window (or the first or last sample): every quantity is read.
    Edge,
}

/// A source of readings for one or more devices.
pub trait EnergySensor: Send {
    /// The devices this sensor reads, in the order `read` returns them.
    fn devices(&self) -> &[DeviceInfo];

    /// Reads every device once. `t_s` is the time since sampling started, on the sampler's clock;
    /// time-driven sensors (fake, replay) use it, hardware sensors ignore it.
    fn read(&mut self, t_s: f64, kind: ReadKind) -> Result<Vec<Reading>, SensorError>;

    /// Keeps only the devices at the given positions of `devices()`, in that order.
    fn retain(&mut self, keep: &[usize]);

    /// Process ids using each device (position in `devices()`), where the sensor can tell.
    fn processes(&self) -> Vec<(usize, Vec<u32>)> {
        Vec::new()
    }

    /// Warnings about a window `[t0_s, t1_s]` that only the sensor can judge.
    fn window_warnings(&self, _t0_s: f64, _t1_s: f64) -> Vec<Warning> {
        Vec::new()
    }
}

/// Keeps the elements of `v` at positions `keep`, in that order.
pub(crate) fn retain_positions<T: Clone>(v: &mut Vec<T>, keep: &[usize]) {
    *v = keep.iter().filter_map(|&i| v.get(i).cloned()).collect();
}
