//! Energy of one device over a time window `[t0, t1]` of a sampled series.
//!
//! Where the device has an energy counter, the window's energy is the counter's increase, made
//! wrap- and reset-safe: the counter is first unwrapped into a monotone cumulative series (a
//! fall is a wrap when the hardware declares a wrap range, else a reset whose segment is
//! estimated from power), then read at `t0` and `t1` by linear interpolation. Independently, the
//! trapezoid of instantaneous power over the window is computed where instantaneous power exists.
//! Both figures are kept; the counter wins when present. The result is never negative.

use crate::timeline::{DeviceSeries, Point};
use crate::warning::{Warning, DISAGREEMENT_THRESHOLD, MIN_COUNTER_UPDATES};
use serde::{Deserialize, Serialize};

/// How a window's energy was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    /// Delta of the device's cumulative energy counter.
    Counter,
    /// Trapezoidal integral of instantaneous power samples.
    PowerIntegration,
}

impl EnergyMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::Counter => "counter",
            EnergyMethod::PowerIntegration => "power_integration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "counter" => Some(EnergyMethod::Counter),
            "power_integration" => Some(EnergyMethod::PowerIntegration),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowOptions {
    /// Wrap range of the counter in joules, when the hardware declares one.
    pub counter_wrap_j: Option<f64>,
    pub disagreement_threshold: f64,
    pub min_counter_updates: usize,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            counter_wrap_j: None,
            disagreement_threshold: DISAGREEMENT_THRESHOLD,
            min_counter_updates: MIN_COUNTER_UPDATES,
        }
    }
}

/// The energy of one device over one window, with both methods' figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowEnergy {
    pub window_s: f64,
    /// The figure to use: the counter delta if there is a counter, else integrated power, else null.
    pub energy_j: Option<f64>,
    pub method: Option<EnergyMethod>,
    pub counter_j: Option<f64>,
    pub integrated_power_j: Option<f64>,
    /// `energy_j / window_s`.
    pub avg_power_w: Option<f64>,
    /// Highest instantaneous power sampled in the window, or, without instantaneous power, the
    /// highest counter-derived power between two samples.
    pub peak_power_w: Option<f64>,
    /// How many times the counter changed value inside the window.
    pub counter_updates: usize,
    pub counter_wraps: usize,
    pub warnings: Vec<Warning>,
}

/// Computes the energy of `series` over `[t0, t1]` (seconds on the series' clock).
pub fn window_energy(
    series: &DeviceSeries,
    t0: f64,
    t1: f64,
    opts: &WindowOptions,
) -> WindowEnergy {
    let (t0, t1) = if t1 < t0 { (t1, t0) } else { (t0, t1) };
    let window_s = t1 - t0;
    let device = &series.device_id;
    let mut warnings = Vec::new();

    let integrated_power_j = trapezoid(&series.points, t0, t1);
    let counter = Counter::unwrap(&series.points, opts.counter_wrap_j);
    let counter_j = counter.as_ref().map(|c| (c.at(t1) - c.at(t0)).max(0.0));
    let (counter_updates, counter_wraps) = counter
        .as_ref()
        .map_or((0, 0), |c| (c.updates_within(t0, t1), c.wraps));

    if let Some(c) = &counter {
        for reset in &c.resets {
            warnings.push(Warning::CounterReset {
                device: device.clone(),
                at_s: reset.at_s,
                estimated_j: reset.estimated_j,
            });
        }
        if counter_updates < opts.min_counter_updates && window_s > 0.0 {
            warnings.push(Warning::WindowTooShort {
                device: device.clone(),
                window_s,
                counter_updates,
            });
        }
    }

    let (energy_j, method) = match (counter_j, integrated_power_j) {
        (Some(c), Some(p)) => {
            let scale = c.abs().max(p.abs());
            let rel_diff = if scale > 0.0 {
                (c - p).abs() / scale
            } else {
                0.0
            };
            if rel_diff > opts.disagreement_threshold {
                warnings.push(Warning::CounterPowerDisagreement {
                    device: device.clone(),
                    counter_j: c,
                    integrated_j: p,
                    rel_diff,
                });
            }
            (Some(c), Some(EnergyMethod::Counter))
        }
        (Some(c), None) => (Some(c), Some(EnergyMethod::Counter)),
        (None, Some(p)) => {
            warnings.push(Warning::NoCounter {
                device: device.clone(),
            });
            (Some(p), Some(EnergyMethod::PowerIntegration))
        }
        (None, None) => {
            warnings.push(Warning::NoEnergy {
                device: device.clone(),
            });
            (None, None)
        }
    };

    let peak_power_w = series
        .peak_power_w(t0, t1)
        .or_else(|| counter.as_ref().and_then(|c| c.peak_rate_within(t0, t1)));

    WindowEnergy {
        window_s,
        energy_j,
        method,
        counter_j,
        integrated_power_j,
        avg_power_w: energy_j.filter(|_| window_s > 0.0).map(|e| e / window_s),
        peak_power_w,
        counter_updates,
        counter_wraps,
        warnings,
    }
}

/// Trapezoid of instantaneous power over `[t0, t1]`, with linear interpolation at the edges and
/// the nearest value held beyond the first or last sample. `None` without any power sample.
fn trapezoid(points: &[Point], t0: f64, t1: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.reading.power_w.map(|w| (p.t_s, w)))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let mut knots = vec![(t0, interpolate(&pts, t0))];
    knots.extend(pts.iter().copied().filter(|&(t, _)| t > t0 && t < t1));
    knots.push((t1, interpolate(&pts, t1)));
    Some(
        knots
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum(),
    )
}

/// Linear interpolation in time-sorted `(t, v)` pairs, holding the end values outside them.
/// `pts` must not be empty.
pub fn interpolate(pts: &[(f64, f64)], t: f64) -> f64 {
    let i = pts.partition_point(|&(pt, _)| pt <= t);
    if i == 0 {
        return pts[0].1;
    }
    if i == pts.len() {
        return pts[pts.len() - 1].1;
    }
    let (ta, va) = pts[i - 1];
    let (tb, vb) = pts[i];
    if tb <= ta {
        return vb;
    }
    va + (vb - va) * (t - ta) / (tb - ta)
}

struct Reset {
    at_s: f64,
    estimated_j: f64,
}

/// An energy counter unwrapped into a monotone cumulative series `(t, joules since first sample)`.
struct Counter {
    cumulative: Vec<(f64, f64)>,
    changed: Vec<bool>,
    wraps: usize,
    resets: Vec<Reset>,
}

impl Counter {
    fn unwrap(points: &[Point], wrap_j: Option<f64>) -> Option<Counter> {
        let raw: Vec<(f64, f64, Option<f64>)> = points
            .iter()
            .filter_map(|p| p.reading.energy_j.map(|e| (p.t_s, e, p.reading.power_w)))
            .collect();
        if raw.len() < 2 {
            return None;
        }
        let mut deltas: Vec<Option<f64>> = Vec::with_capacity(raw.len() - 1);
        let mut wraps = 0;
        let mut reset_segments = Vec::new();
        for (i, w) in raw.windows(2).enumerate() {
            let d = w[1].1 - w[0].1;
            if d >= 0.0 {
                deltas.push(Some(d));
            } else if let Some(range) = wrap_j.filter(|r| d + r >= 0.0) {
                wraps += 1;
                deltas.push(Some(d + range));
            } else {
                deltas.push(None);
                reset_segments.push(i);
            }
        }
        // A reset segment is estimated from the power at its ends, or else from the mean rate of
        // the segments the counter did measure.
        let (known_j, known_s) = deltas
            .iter()
            .zip(raw.windows(2))
            .filter_map(|(d, w)| d.map(|d| (d, w[1].0 - w[0].0)))
            .fold((0.0, 0.0), |(e, s), (d, dt)| (e + d, s + dt));
        let mean_rate = if known_s > 0.0 {
            known_j / known_s
        } else {
            0.0
        };
        let mut resets = Vec::new();
        for i in reset_segments {
            let (ta, _, pa) = raw[i];
            let (tb, _, pb) = raw[i + 1];
            let dt = tb - ta;
            let estimated_j = match (pa, pb) {
                (Some(a), Some(b)) => dt * (a + b) / 2.0,
                _ => dt * mean_rate,
            }
            .max(0.0);
            deltas[i] = Some(estimated_j);
            resets.push(Reset {
                at_s: tb,
                estimated_j,
            });
        }
        let mut cumulative = Vec::with_capacity(raw.len());
        let mut changed = Vec::with_capacity(raw.len());
        let mut acc = 0.0;
        cumulative.push((raw[0].0, 0.0));
        changed.push(false);
        for (i, d) in deltas.iter().enumerate() {
            let d = d.expect("every segment has a delta after reset estimation; this is a bug");
            acc += d;
            cumulative.push((raw[i + 1].0, acc));
            changed.push(raw[i + 1].1 != raw[i].1);
        }
        Some(Counter {
            cumulative,
            changed,
            wraps,
            resets,
        })
    }

    fn at(&self, t: f64) -> f64 {
        interpolate(&self.cumulative, t)
    }

    fn updates_within(&self, t0: f64, t1: f64) -> usize {
        self.cumulative
            .iter()
            .zip(&self.changed)
            .filter(|((t, _), &c)| c && *t > t0 && *t <= t1)
            .count()
    }

    fn peak_rate_within(&self, t0: f64, t1: f64) -> Option<f64> {
        self.cumulative
            .windows(2)
            .filter(|w| w[1].0 > t0 && w[0].0 < t1 && w[1].0 > w[0].0)
            .map(|w| (w[1].1 - w[0].1) / (w[1].0 - w[0].0))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    }
}

#[cfg(test)]
mod tests;
