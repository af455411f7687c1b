//! Turns a sampled timeline into per-device and total figures over one window.

use crate::device::DeviceInfo;
use crate::record::DeviceResult;
use crate::timeline::{Reading, Timeline};
use crate::warning::{Warning, BUSY_UTIL_PCT, HOT_TEMPERATURE_C};
use crate::window::{window_energy, WindowOptions};

/// Per-device results and totals over `[t0, t1]` of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub devices: Vec<DeviceResult>,
    pub energy_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub peak_power_w: Option<f64>,
    pub idle_power_w: Option<f64>,
    pub net_energy_j: Option<f64>,
    pub warnings: Vec<Warning>,
}

/// Summarizes `timeline` over `[t0, t1]` for `devices`. `idle_w` holds each device's idle power
/// (same order as `devices`) when an idle baseline was measured.
pub fn summarize(
    devices: &[DeviceInfo],
    timeline: &Timeline,
    t0: f64,
    t1: f64,
    idle_w: Option<&[Option<f64>]>,
) -> Summary {
    let wall_s = (t1 - t0).max(0.0);
    let mut warnings = Vec::new();
    let mut results = Vec::with_capacity(devices.len());
    for (i, info) in devices.iter().enumerate() {
        let empty = crate::timeline::DeviceSeries::new(info.id.clone());
        let series = timeline.device(&info.id).unwrap_or(&empty);
        let opts = WindowOptions {
            counter_wrap_j: info.capabilities.counter_wrap_j,
            ..WindowOptions::default()
        };
        let w = window_energy(series, t0, t1, &opts);
        warnings.extend(w.warnings.iter().cloned());
        if let Some(first) = series.within(t0, t1).next() {
            start_warnings(&info.id, &first.reading, &mut warnings);
        }
        let idle_power_w = idle_w.and_then(|v| v.get(i).copied().flatten());
        results.push(DeviceResult {
            info: info.clone(),
            energy_j: w.energy_j,
            energy_method: w.method,
            counter_energy_j: w.counter_j,
            integrated_power_j: w.integrated_power_j,
            avg_power_w: w.avg_power_w,
            peak_power_w: w.peak_power_w,
            idle_power_w,
            net_energy_j: w.energy_j.zip(idle_power_w).map(|(e, p)| e - p * wall_s),
            counter_updates: w.counter_updates,
            mean_sm_util_pct: series.mean_of(t0, t1, |r| r.sm_util_pct),
            mean_mem_util_pct: series.mean_of(t0, t1, |r| r.mem_util_pct),
            max_mem_used_bytes: series
                .within(t0, t1)
                .filter_map(|p| p.reading.mem_used_bytes)
                .max(),
            mean_sm_clock_mhz: series.mean_of(t0, t1, |r| r.sm_clock_mhz.map(f64::from)),
            max_temperature_c: series.max_of(t0, t1, |r| r.temperature_c),
        });
    }
    let energy_j = sum_known(results.iter().map(|d| d.energy_j));
    let idle_power_w = idle_w.and_then(|_| sum_known(results.iter().map(|d| d.idle_power_w)));
    Summary {
        energy_j,
        avg_power_w: energy_j.filter(|_| wall_s > 0.0).map(|e| e / wall_s),
        peak_power_w: total_peak(&results, timeline, t0, t1),
        net_energy_j: energy_j.zip(idle_power_w).map(|(e, p)| e - p * wall_s),
        idle_power_w,
        devices: results,
        warnings,
    }
}

fn start_warnings(device: &str, r: &Reading, warnings: &mut Vec<Warning>) {
    if let Some(u) = r.sm_util_pct.filter(|&u| u >= BUSY_UTIL_PCT) {
        warnings.push(Warning::DeviceBusyAtStart {
            device: device.to_string(),
            sm_util_pct: u,
        });
    }
    if let Some(t) = r.temperature_c.filter(|&t| t >= HOT_TEMPERATURE_C) {
        warnings.push(Warning::DeviceHotAtStart {
            device: device.to_string(),
            temperature_c: t,
        });
    }
}

/// Sum of the values that are known; `None` when none is.
fn sum_known(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// Peak of the total instantaneous power across devices, at the sampling instants (all devices are
/// read at each instant). Without instantaneous power, the sum of per-device peaks (an upper bound).
fn total_peak(results: &[DeviceResult], timeline: &Timeline, t0: f64, t1: f64) -> Option<f64> {
    let mut peak: Option<f64> = None;
    let n = timeline.len();
    for k in 0..n {
        let mut total = None;
        for s in &timeline.series {
            if let Some(p) = s.points.get(k).filter(|p| p.t_s >= t0 && p.t_s <= t1) {
                if let Some(w) = p.reading.power_w {
                    total = Some(total.unwrap_or(0.0) + w);
                }
            }
        }
        if let Some(t) = total {
            peak = Some(peak.map_or(t, |m: f64| m.max(t)));
        }
    }
    peak.or_else(|| sum_known(results.iter().map(|d| d.peak_power_w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Capabilities, DeviceKind};
    use crate::timeline::{DeviceSeries, Point};

    fn info(id: &str) -> DeviceInfo {
        DeviceInfo {
            id: id.into(),
            index: 0,
            kind: DeviceKind::Simulated,
            sensor: "fake".into(),
            name: "fake".into(),
            uuid: None,
            driver_version: None,
            power_limits: None,
            capabilities: Capabilities {
                energy_counter: true,
                instant_power: true,
                ..Capabilities::default()
            },
        }
    }

    fn constant(id: &str, w: f64) -> DeviceSeries {
        DeviceSeries {
            device_id: id.into(),
            points: (0..=10)
                .map(|i| Point {
                    t_s: i as f64 * 0.1,
                    reading: Reading {
                        energy_j: Some(w * i as f64 * 0.1),
                        power_w: Some(w),
                        sm_util_pct: Some(if i == 0 { 50.0 } else { 90.0 }),
                        ..Reading::default()
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn totals_sum_devices_and_net_subtracts_idle() {
        let devices = [info("a"), info("b")];
        let timeline = Timeline {
            series: vec![constant("a", 250.0), constant("b", 100.0)],
        };
        let s = summarize(
            &devices,
            &timeline,
            0.0,
            1.0,
            Some(&[Some(50.0), Some(20.0)]),
        );
        assert!((s.energy_j.unwrap() - 350.0).abs() < 1e-9);
        assert!((s.avg_power_w.unwrap() - 350.0).abs() < 1e-9);
        assert_eq!(s.peak_power_w, Some(350.0));
        assert!((s.net_energy_j.unwrap() - 280.0).abs() < 1e-9);
        assert!((s.devices[0].net_energy_j.unwrap() - 200.0).abs() < 1e-9);
        assert!(s.warnings.iter().any(
            |w| matches!(w, Warning::DeviceBusyAtStart { sm_util_pct, .. } if *sm_util_pct == 50.0)
        ));
    }

    #[test]
    fn a_device_without_samples_is_null() {
        let s = summarize(&[info("a")], &Timeline::default(), 0.0, 1.0, None);
        assert_eq!(s.energy_j, None);
        assert_eq!(s.devices[0].energy_j, None);
        assert_eq!(s.net_energy_j, None);
    }
}
