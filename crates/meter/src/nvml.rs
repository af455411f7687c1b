//! `nvml`: NVIDIA GPUs through NVML. The library (libnvidia-ml.so.1) is loaded at run time, so
//! a build of wattbench runs on machines without it and explains why GPUs cannot be measured.
//!
//! Per GPU and sample: the total-energy counter (mJ since driver load), instantaneous power
//! (field 186, `POWER_INSTANT`), the driver's averaged power (field 185, `POWER_AVERAGE`, a 1 s
//! trailing average on H100, kept for reference and never integrated), SM and memory utilization,
//! memory used, SM clock and temperature. What a GPU does not support is probed once at start and
//! then recorded as null.

use crate::error::SensorError;
use crate::sensor::{retain_positions, EnergySensor, ReadKind};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{NVML_FI_DEV_POWER_AVERAGE, NVML_FI_DEV_POWER_INSTANT};
use nvml_wrapper::{Device, Nvml};
use std::ffi::OsStr;
use std::time::{Duration, Instant};
use wattbench_core::{Capabilities, DeviceInfo, DeviceKind, PowerLimits, Reading, Watts};

/// On periodic ticks the energy counter is read at most this often. The H100 updates it about
/// every 100 ms and one read costs about 4 ms of CPU, so reading it faster only repeats values.
/// Window edges always read it. Slightly under 100 ms, so that 100 ms sampling reads it every time.
pub const COUNTER_MIN_PERIOD: Duration = Duration::from_millis(90);

/// Library names tried in order: the versioned soname every driver install has, then the
/// development symlink.
const LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

#[derive(Debug, Clone)]
struct Probe {
    nvml_index: u32,
    counter: bool,
    instant: bool,
    average: bool,
    utilization: bool,
    memory: bool,
    clock: bool,
    temperature: bool,
}

pub struct NvmlSensor {
    nvml: Nvml,
    probes: Vec<Probe>,
    devices: Vec<DeviceInfo>,
    last_counter_read: Option<Instant>,
}

/// Loads NVML, trying each library name.
pub(crate) fn init() -> Result<Nvml, SensorError> {
    let mut reasons = Vec::new();
    for name in LIBRARY_NAMES {
        match Nvml::builder().lib_path(OsStr::new(name)).init() {
            Ok(nvml) => return Ok(nvml),
            Err(e) => {
                let e = e.to_string();
                let e = e.trim_start_matches("a libloading error occurred: ");
                reasons.push(if e.starts_with(name) {
                    e.to_string()
                } else {
                    format!("{name}: {e}")
                });
            }
        }
    }
    Err(SensorError::NvmlUnavailable {
        reason: reasons.join("; "),
    })
}

/// Resolves `CUDA_VISIBLE_DEVICES` into NVML indices. Entries are indices or UUIDs (full or a
/// unique prefix such as `GPU-8f3a`). An empty value hides every GPU. Note that CUDA numbers
/// devices fastest-first unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`, while NVML numbers them by PCI
/// bus; indices here are NVML's.
pub fn visible_indices(value: Option<&str>, uuids: &[String]) -> Result<Vec<u32>, SensorError> {
    let all: Vec<u32> = (0..uuids.len() as u32).collect();
    let Some(value) = value else { return Ok(all) };
    let available = || {
        uuids
            .iter()
            .enumerate()
            .map(|(i, u)| format!("{i}={u}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let index = if let Ok(i) = entry.parse::<i64>() {
            if i < 0 {
                // CUDA stops at the first invalid index: nothing after it is visible.
                break;
            }
            u32::try_from(i)
                .ok()
                .filter(|&i| (i as usize) < uuids.len())
        } else {
            let matches: Vec<u32> = uuids
                .iter()
                .enumerate()
                .filter(|(_, u)| u.starts_with(entry))
                .map(|(i, _)| i as u32)
                .collect();
            (matches.len() == 1).then(|| matches[0])
        };
        match index {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None => {
                return Err(SensorError::CudaVisibleDevices {
                    entry: entry.to_string(),
                    available: format!("GPUs here: {}", available()),
                })
            }
        }
    }
    Ok(out)
}

fn sample_to_f64(v: &SampleValue) -> f64 {
    match *v {
        SampleValue::F64(x) => x,
        SampleValue::U32(x) => f64::from(x),
        SampleValue::U64(x) => x as f64,
        SampleValue::I64(x) => x as f64,
    }
}

/// Reads fields 186 (instant) and 185 (average) in one call; milliwatts to watts.
fn power_fields(dev: &Device, instant: bool, average: bool) -> (Option<f64>, Option<f64>) {
    let ids: Vec<FieldId> = [
        (instant, NVML_FI_DEV_POWER_INSTANT),
        (average, NVML_FI_DEV_POWER_AVERAGE),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, id)| FieldId(*id))
    .collect();
    if ids.is_empty() {
        return (None, None);
    }
    let Ok(values) = dev.field_values_for(&ids) else {
        return (None, None);
    };
    let mut out = (None, None);
    for v in values.into_iter().flatten() {
        let w = v.value.as_ref().ok().map(|s| sample_to_f64(s) / 1000.0);
        match v.field.0 {
            NVML_FI_DEV_POWER_INSTANT => out.0 = w,
            NVML_FI_DEV_POWER_AVERAGE => out.1 = w,
            _ => {}
        }
    }
    out
}

impl NvmlSensor {
    pub fn open() -> Result<Self, SensorError> {
        let nvml = init()?;
        let count = nvml.device_count().map_err(|e| SensorError::NoGpu {
            detail: format!(": counting devices failed ({e})"),
        })?;
        if count == 0 {
            return Err(SensorError::NoGpu {
                detail: String::new(),
            });
        }
        let uuids: Vec<String> = (0..count)
            .map(|i| {
                nvml.device_by_index(i)
                    .and_then(|d| d.uuid())
                    .unwrap_or_else(|_| format!("unknown-{i}"))
            })
            .collect();
        let visible = visible_indices(
            std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
            &uuids,
        )?;
        if visible.is_empty() {
            return Err(SensorError::NoGpu {
                detail: " visible: CUDA_VISIBLE_DEVICES hides every GPU".into(),
            });
        }
        let driver = nvml.sys_driver_version().ok();
        let mut probes = Vec::new();
        let mut devices = Vec::new();
        for i in visible {
            let dev = nvml.device_by_index(i).map_err(|e| SensorError::Read {
                device: format!("gpu{i}"),
                message: e.to_string(),
            })?;
            let (instant, average) = power_fields(&dev, true, true);
            let probe = Probe {
                nvml_index: i,
                counter: dev.total_energy_consumption().is_ok(),
                instant: instant.is_some(),
                average: average.is_some() || dev.power_usage().is_ok(),
                utilization: dev.utilization_rates().is_ok(),
                memory: dev.memory_info().is_ok(),
                clock: dev.clock_info(Clock::SM).is_ok(),
                temperature: dev.temperature(TemperatureSensor::Gpu).is_ok(),
            };
            let mw = |r: Result<u32, _>| r.ok().map(|v: u32| Watts(f64::from(v) / 1000.0));
            let power_limits = mw(dev.power_management_limit()).map(|current_w| {
                let bounds = dev.power_management_limit_constraints().ok();
                PowerLimits {
                    current_w,
                    default_w: mw(dev.power_management_limit_default()),
                    min_w: bounds
                        .as_ref()
                        .map(|b| Watts(f64::from(b.min_limit) / 1000.0)),
                    max_w: bounds
                        .as_ref()
                        .map(|b| Watts(f64::from(b.max_limit) / 1000.0)),
                }
            });
            devices.push(DeviceInfo {
                id: format!("gpu{i}"),
                index: i,
                kind: DeviceKind::Gpu,
                sensor: "nvml".into(),
                name: dev.name().unwrap_or_else(|_| "NVIDIA GPU".into()),
                uuid: Some(uuids[i as usize].clone()),
                driver_version: driver.clone(),
                capabilities: Capabilities {
                    energy_counter: probe.counter,
                    instant_power: probe.instant,
                    averaged_power: probe.average,
                    utilization: probe.utilization,
                    power_limits: power_limits.is_some(),
                    counter_wrap_j: None,
                },
                power_limits,
            });
            probes.push(probe);
        }
        Ok(NvmlSensor {
            nvml,
            probes,
            devices,
            last_counter_read: None,
        })
    }

    fn read_one(&self, p: &Probe, counter: bool) -> Result<Reading, SensorError> {
        let dev = self
            .nvml
            .device_by_index(p.nvml_index)
            .map_err(|e| SensorError::Read {
                device: format!("gpu{}", p.nvml_index),
                message: e.to_string(),
            })?;
        let energy_j = (p.counter && counter)
            .then(|| dev.total_energy_consumption().ok())
            .flatten()
            .map(|mj| mj as f64 / 1000.0);
        let (power_w, mut avg_power_w) = power_fields(&dev, p.instant, p.average);
        if p.average && avg_power_w.is_none() {
            avg_power_w = dev.power_usage().ok().map(|mw| f64::from(mw) / 1000.0);
        }
        let util = p
            .utilization
            .then(|| dev.utilization_rates().ok())
            .flatten();
        Ok(Reading {
            energy_j,
            power_w,
            avg_power_w,
            sm_util_pct: util.as_ref().map(|u| f64::from(u.gpu)),
            mem_util_pct: util.as_ref().map(|u| f64::from(u.memory)),
            mem_used_bytes: p
                .memory
                .then(|| dev.memory_info().ok().map(|m| m.used))
                .flatten(),
            sm_clock_mhz: p.clock.then(|| dev.clock_info(Clock::SM).ok()).flatten(),
            temperature_c: p
                .temperature
                .then(|| dev.temperature(TemperatureSensor::Gpu).ok().map(f64::from))
                .flatten(),
        })
    }
}

impl EnergySensor for NvmlSensor {
    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn read(&mut self, _t_s: f64, kind: ReadKind) -> Result<Vec<Reading>, SensorError> {
        let now = Instant::now();
        let counter = kind == ReadKind::Edge
            || self
                .last_counter_read
                .is_none_or(|t| now.duration_since(t) >= COUNTER_MIN_PERIOD);
        if counter {
            self.last_counter_read = Some(now);
        }
        self.probes
            .iter()
            .map(|p| self.read_one(p, counter))
            .collect()
    }

    fn retain(&mut self, keep: &[usize]) {
        retain_positions(&mut self.devices, keep);
        retain_positions(&mut self.probes, keep);
    }

    fn processes(&self) -> Vec<(usize, Vec<u32>)> {
        self.probes
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                let dev = self.nvml.device_by_index(p.nvml_index).ok()?;
                let mut pids: Vec<u32> = dev
                    .running_compute_processes()
                    .ok()?
                    .iter()
                    .map(|p| p.pid)
                    .collect();
                if let Ok(g) = dev.running_graphics_processes() {
                    pids.extend(g.iter().map(|p| p.pid));
                }
                pids.sort_unstable();
                pids.dedup();
                Some((k, pids))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids() -> Vec<String> {
        vec![
            "GPU-aaaa-1111".into(),
            "GPU-bbbb-2222".into(),
            "GPU-abcd-3333".into(),
        ]
    }

    #[test]
    fn cuda_visible_devices_by_index_and_uuid() {
        assert_eq!(visible_indices(None, &uuids()).unwrap(), [0, 1, 2]);
        assert_eq!(visible_indices(Some("2,0"), &uuids()).unwrap(), [2, 0]);
        assert_eq!(
            visible_indices(Some("GPU-bbbb,GPU-abcd-3333"), &uuids()).unwrap(),
            [1, 2]
        );
        assert_eq!(
            visible_indices(Some(""), &uuids()).unwrap(),
            Vec::<u32>::new()
        );
        assert_eq!(visible_indices(Some("1,-1,0"), &uuids()).unwrap(), [1]);
    }

    #[test]
    fn cuda_visible_devices_errors_name_the_entry() {
        let e = visible_indices(Some("3"), &uuids())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"3\"") && e.contains("0=GPU-aaaa-1111"), "{e}");
        // "GPU-a" is ambiguous between two GPUs.
        assert!(visible_indices(Some("GPU-a"), &uuids()).is_err());
    }

    #[test]
    fn missing_library_is_explained() {
        // On machines without the NVIDIA driver (CI), opening must fail with the reason.
        if let Err(e) = NvmlSensor::open() {
            let msg = e.to_string();
            assert!(msg.contains("NVIDIA") || msg.contains("GPU"), "{msg}");
        }
    }
}
