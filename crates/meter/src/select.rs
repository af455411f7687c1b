//! `--devices`: choosing which of the sensors' devices to measure.
//!
//! A selector is a device id (`gpu1`, `rapl:package-0`, `fake0`), a UUID or unique UUID prefix
//! (`GPU-8f3a`), or a bare index, which names the GPU (or simulated device) with that index.

use crate::error::SensorError;
use wattbench_core::{DeviceInfo, DeviceKind};

/// Positions in `devices` chosen by `selectors`, in selector order, without duplicates.
pub fn select(devices: &[DeviceInfo], selectors: &[String]) -> Result<Vec<usize>, SensorError> {
    let mut out = Vec::new();
    for sel in selectors.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let matches: Vec<usize> = if let Ok(n) = sel.parse::<u32>() {
            devices
                .iter()
                .enumerate()
                .filter(|(_, d)| {
                    d.index == n && matches!(d.kind, DeviceKind::Gpu | DeviceKind::Simulated)
                })
                .map(|(i, _)| i)
                .collect()
        } else {
            let by_id: Vec<usize> = devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.id == sel || d.uuid.as_deref() == Some(sel))
                .map(|(i, _)| i)
                .collect();
            if by_id.is_empty() {
                devices
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.uuid.as_deref().is_some_and(|u| u.starts_with(sel)))
                    .map(|(i, _)| i)
                    .collect()
            } else {
                by_id
            }
        };
        match matches.as_slice() {
            [] => return Err(not_found(sel, devices)),
            [i] => {
                if !out.contains(i) {
                    out.push(*i)
                }
            }
            many => {
                return Err(SensorError::AmbiguousDevice {
                    selector: sel.to_string(),
                    matches: many
                        .iter()
                        .map(|&i| devices[i].id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
    Ok(out)
}

fn not_found(sel: &str, devices: &[DeviceInfo]) -> SensorError {
    let indexed: Vec<String> = devices
        .iter()
        .filter(|d| matches!(d.kind, DeviceKind::Gpu | DeviceKind::Simulated))
        .map(|d| d.index.to_string())
        .collect();
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let found = if devices.is_empty() {
        "no devices found".to_string()
    } else if indexed.len() == devices.len() {
        format!("{} device(s) found: {}", devices.len(), indexed.join(", "))
    } else {
        format!("{} device(s) found: {}", devices.len(), ids.join(", "))
    };
    let suggestion = if indexed.len() == devices.len() && !devices.is_empty() {
        indexed.join(",")
    } else if devices.is_empty() {
        "with a device that `wattbench devices` lists".to_string()
    } else {
        ids.join(",")
    };
    SensorError::DeviceNotFound {
        selector: sel.to_string(),
        found,
        suggestion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattbench_core::Capabilities;

    fn dev(id: &str, index: u32, kind: DeviceKind, uuid: Option<&str>) -> DeviceInfo {
        DeviceInfo {
            id: id.into(),
            index,
            kind,
            sensor: "test".into(),
            name: id.into(),
            uuid: uuid.map(Into::into),
            driver_version: None,
            power_limits: None,
            capabilities: Capabilities::default(),
        }
    }

    fn gpus() -> Vec<DeviceInfo> {
        vec![
            dev("gpu0", 0, DeviceKind::Gpu, Some("GPU-aaaa")),
            dev("gpu1", 1, DeviceKind::Gpu, Some("GPU-bbbb")),
            dev("rapl:package-0", 0, DeviceKind::CpuPackage, None),
        ]
    }

    #[test]
    fn selects_by_index_id_and_uuid_prefix() {
        let s = |v: &[&str]| {
            select(
                &gpus(),
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(s(&["1"]).unwrap(), [1]);
        assert_eq!(s(&["GPU-bb", "gpu0", "1"]).unwrap(), [1, 0]);
        assert_eq!(s(&["rapl:package-0"]).unwrap(), [2]);
    }

    #[test]
    fn a_missing_index_lists_what_exists_and_the_flag() {
        let devices = vec![
            dev("fake0", 0, DeviceKind::Simulated, None),
            dev("fake1", 1, DeviceKind::Simulated, None),
        ];
        let e = select(&devices, &["3".to_string()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "device \"3\" does not exist (2 device(s) found: 0, 1); pass --devices 0,1"
        );
        let e = select(&gpus(), &["GPU-".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ambiguous"), "{e}");
    }
}
