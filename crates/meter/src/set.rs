//! Several sensors read together as one, with device selection applied.

use crate::error::SensorError;
use crate::fake::FakeSensor;
use crate::nvml::NvmlSensor;
use crate::prometheus::PrometheusSensor;
use crate::rapl::RaplSensor;
use crate::replay::ReplaySensor;
use crate::select::select;
use crate::sensor::{EnergySensor, ReadKind};
use crate::spec::{SensorSpec, POWERCAP_ROOT, POWERCAP_ROOT_ENV};
use std::path::PathBuf;
use wattbench_core::{DeviceInfo, Reading, Warning};

/// A sensor that `auto` tried and could not use, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    pub sensor: &'static str,
    pub reason: String,
}

/// The sensors of one measurement. Devices keep the order of the specs that named them.
pub struct SensorSet {
    sensors: Vec<Box<dyn EnergySensor>>,
    devices: Vec<DeviceInfo>,
    /// What `auto` could not use, kept to explain an empty set.
    pub unavailable: Vec<Unavailable>,
}

fn powercap_root() -> PathBuf {
    std::env::var_os(POWERCAP_ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(POWERCAP_ROOT))
}

impl SensorSet {
    /// Opens every sensor in `specs`. A sensor named explicitly must work; `auto` takes the real
    /// sensors that work here and records why the others did not.
    pub fn open(specs: &[SensorSpec]) -> Result<SensorSet, SensorError> {
        let mut sensors: Vec<Box<dyn EnergySensor>> = Vec::new();
        let mut unavailable = Vec::new();
        for spec in specs {
            match spec {
                SensorSpec::Auto => {
                    match NvmlSensor::open() {
                        Ok(s) => sensors.push(Box::new(s)),
                        Err(e) => unavailable.push(Unavailable {
                            sensor: "nvml",
                            reason: e.to_string(),
                        }),
                    }
                    match RaplSensor::open(&powercap_root()) {
                        Ok(s) => sensors.push(Box::new(s)),
                        Err(e) => unavailable.push(Unavailable {
                            sensor: "rapl",
                            reason: e.to_string(),
                        }),
                    }
                }
                SensorSpec::Nvml => sensors.push(Box::new(NvmlSensor::open()?)),
                SensorSpec::Rapl { root } => sensors.push(Box::new(RaplSensor::open(root)?)),
                SensorSpec::Fake { watts, count } => {
                    sensors.push(Box::new(FakeSensor::new(*watts, *count)))
                }
                SensorSpec::Replay { path } => sensors.push(Box::new(ReplaySensor::open(path)?)),
                SensorSpec::Prometheus { urls, options } => {
                    sensors.push(Box::new(PrometheusSensor::open(urls, options.clone())?))
                }
            }
        }
        let mut set = SensorSet {
            sensors,
            devices: Vec::new(),
            unavailable,
        };
        set.refresh_devices();
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = set.devices.iter().find(|d| !seen.insert(d.id.clone())) {
            return Err(SensorError::InvalidSpec {
                spec: dup.sensor.clone(),
                reason: format!("device {} is named twice; give each sensor once", dup.id),
            });
        }
        Ok(set)
    }

    fn refresh_devices(&mut self) {
        self.devices = self
            .sensors
            .iter()
            .flat_map(|s| s.devices().to_vec())
            .collect();
    }

    /// Keeps only the devices named by `selectors` (see [`select`]); no selectors keeps all.
    pub fn select(&mut self, selectors: &[String]) -> Result<(), SensorError> {
        if selectors.iter().all(|s| s.trim().is_empty()) {
            return Ok(());
        }
        let keep = select(&self.devices, selectors)?;
        let mut offset = 0;
        for s in &mut self.sensors {
            let n = s.devices().len();
            let mut mine: Vec<usize> = keep
                .iter()
                .filter(|&&k| k >= offset && k < offset + n)
                .map(|&k| k - offset)
                .collect();
            mine.sort_unstable();
            s.retain(&mine);
            offset += n;
        }
        self.sensors.retain(|s| !s.devices().is_empty());
        self.refresh_devices();
        Ok(())
    }
}

impl EnergySensor for SensorSet {
    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn read(&mut self, t_s: f64, kind: ReadKind) -> Result<Vec<Reading>, SensorError> {
        let mut out = Vec::with_capacity(self.devices.len());
        for s in &mut self.sensors {
            out.extend(s.read(t_s, kind)?);
        }
        Ok(out)
    }

    fn retain(&mut self, keep: &[usize]) {
        let ids: Vec<String> = keep
            .iter()
            .filter_map(|&k| self.devices.get(k).map(|d| d.id.clone()))
            .collect();
        // Selection by id goes through `select`, which never fails for ids taken from the set.
        let _ = self.select(&ids);
    }

    fn processes(&self) -> Vec<(usize, Vec<u32>)> {
        let mut out = Vec::new();
        let mut offset = 0;
        for s in &self.sensors {
            out.extend(s.processes().into_iter().map(|(k, p)| (k + offset, p)));
            offset += s.devices().len();
        }
        out
    }

    fn window_warnings(&self, t0_s: f64, t1_s: f64) -> Vec<Warning> {
        self.sensors
            .iter()
            .flat_map(|s| s.window_warnings(t0_s, t1_s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_spans_sensors_and_reads_stay_aligned() {
        let mut set = SensorSet::open(&[SensorSpec::Fake {
            watts: 10.0,
            count: 3,
        }])
        .unwrap();
        set.select(&["2".into(), "fake0".into()]).unwrap();
        let ids: Vec<&str> = set.devices().iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["fake0", "fake2"]);
        assert_eq!(set.read(1.0, ReadKind::Edge).unwrap().len(), 2);
    }

    #[test]
    fn naming_the_same_fake_twice_is_refused() {
        let spec = SensorSpec::Fake {
            watts: 1.0,
            count: 1,
        };
        let e = SensorSet::open(&[spec.clone(), spec])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("named twice"), "{e}");
    }
}
