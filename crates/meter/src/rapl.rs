//! `rapl`: CPU package and DRAM energy from the Linux powercap tree (`/sys/class/powercap`).
//!
//! Top-level zones `intel-rapl:N` are packages; their `dram` subzones are added. `core` and
//! `uncore` subzones are already part of their package and are skipped. Counters are in
//! microjoules and wrap at `max_energy_range_uj`, which is declared to the window computation.
//! RAPL has no instantaneous power: power is derived from counter deltas.

use crate::error::SensorError;
use crate::sensor::{retain_positions, EnergySensor, ReadKind};
use std::path::{Path, PathBuf};
use wattbench_core::{Capabilities, DeviceInfo, DeviceKind, Reading};

pub struct RaplSensor {
    devices: Vec<DeviceInfo>,
    files: Vec<PathBuf>,
}

fn read_trimmed(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

impl RaplSensor {
    pub fn open(root: &Path) -> Result<Self, SensorError> {
        let unavailable = |reason: String| SensorError::RaplUnavailable {
            root: root.to_path_buf(),
            reason,
        };
        let entries = std::fs::read_dir(root).map_err(|e| {
            unavailable(format!(
                "{e} (no powercap driver: not a Linux host with Intel or AMD RAPL, or a virtual machine that hides it)"
            ))
        })?;
        let mut packages: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("intel-rapl:") && n.matches(':').count() == 1)
            })
            .collect();
        packages.sort();
        if packages.is_empty() {
            return Err(unavailable(
                "no intel-rapl:N zones (the CPU or kernel exposes no RAPL energy)".into(),
            ));
        }
        let mut zones = Vec::new();
        for pkg in &packages {
            zones.push(pkg.clone());
            let mut subs: Vec<PathBuf> = std::fs::read_dir(pkg)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            subs.sort();
            for sub in subs {
                let is_zone = sub
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("intel-rapl:"));
                if is_zone && read_trimmed(&sub.join("name")).is_ok_and(|n| n == "dram") {
                    zones.push(sub);
                }
            }
        }
        let mut devices = Vec::new();
        let mut files = Vec::new();
        let (mut pkg_index, mut dram_index) = (0, 0);
        for zone in zones {
            let name = read_trimmed(&zone.join("name")).unwrap_or_else(|_| "unknown".into());
            let energy = zone.join("energy_uj");
            if let Err(e) = read_trimmed(&energy) {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (energy_uj is readable only by root since Linux 5.10: run as root, or grant read access \
                     with `chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`)"
                } else {
                    ""
                };
                return Err(unavailable(format!(
                    "cannot read {}: {e}{hint}",
                    energy.display()
                )));
            }
            let wrap = read_trimmed(&zone.join("max_energy_range_uj"))
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .map(|uj| uj / 1e6);
            let is_dram = name == "dram";
            let parent = if is_dram {
                zone.parent()
                    .and_then(|p| read_trimmed(&p.join("name")).ok())
                    .unwrap_or_else(|| "package".into())
            } else {
                String::new()
            };
            let (id, kind, index) = if is_dram {
                dram_index += 1;
                (
                    format!("rapl:{parent}:dram"),
                    DeviceKind::Dram,
                    dram_index - 1,
                )
            } else {
                pkg_index += 1;
                (
                    format!("rapl:{name}"),
                    DeviceKind::CpuPackage,
                    pkg_index - 1,
                )
            };
            devices.push(DeviceInfo {
                id,
                index,
                kind,
                sensor: "rapl".into(),
                name: if is_dram {
                    format!("DRAM of {parent}")
                } else {
                    format!("CPU {name}")
                },
                uuid: None,
                driver_version: None,
                power_limits: None,
                capabilities: Capabilities {
                    energy_counter: true,
                    counter_wrap_j: wrap,
                    ..Capabilities::default()
                },
            });
            files.push(energy);
        }
        Ok(RaplSensor { devices, files })
    }
}

impl EnergySensor for RaplSensor {
    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn read(&mut self, _t_s: f64, _kind: ReadKind) -> Result<Vec<Reading>, SensorError> {
        self.files
            .iter()
            .zip(&self.devices)
            .map(|(f, d)| {
                let v = read_trimmed(f)
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.parse::<f64>().map_err(|e| format!("{s:?}: {e}")))
                    .map_err(|message| SensorError::Read {
                        device: d.id.clone(),
                        message,
                    })?;
                Ok(Reading {
                    energy_j: Some(v / 1e6),
                    ..Reading::default()
                })
            })
            .collect()
    }

    fn retain(&mut self, keep: &[usize]) {
        retain_positions(&mut self.devices, keep);
        retain_positions(&mut self.files, keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(dir: &Path, name: &str, uj: u64, max: u64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        std::fs::write(dir.join("energy_uj"), format!("{uj}\n")).unwrap();
        std::fs::write(dir.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
    }

    #[test]
    fn reads_packages_and_dram_from_a_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        let p0 = root.path().join("intel-rapl:0");
        zone(&p0, "package-0", 5_000_000, 262_143_328_850);
        zone(&p0.join("intel-rapl:0:0"), "core", 1, 10);
        zone(
            &p0.join("intel-rapl:0:1"),
            "dram",
            2_500_000,
            65_712_999_613,
        );
        zone(
            &root.path().join("intel-rapl:1"),
            "package-1",
            7_000_000,
            262_143_328_850,
        );
        let mut s = RaplSensor::open(root.path()).unwrap();
        let ids: Vec<&str> = s.devices().iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            ["rapl:package-0", "rapl:package-0:dram", "rapl:package-1"]
        );
        assert_eq!(
            s.devices()[0].capabilities.counter_wrap_j,
            Some(262_143.328_850)
        );
        let r = s.read(0.0, ReadKind::Edge).unwrap();
        assert_eq!(r[0].energy_j, Some(5.0));
        assert_eq!(r[1].energy_j, Some(2.5));
        assert_eq!(r[0].power_w, None);
    }

    #[test]
    fn a_missing_tree_explains_itself() {
        let e = RaplSensor::open(Path::new("/nonexistent/powercap"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("/nonexistent/powercap") && e.contains("powercap driver"),
            "{e}"
        );
    }
}
