//! `replay:FILE`: plays a recorded power trace as if it were a live sensor.
//!
//! The trace is CSV with the header `t_s,device,power_w,energy_j`. `t_s` is seconds from the
//! trace's start, aligned to the start of the measurement; `power_w` and `energy_j` may each be
//! empty (a trace without a counter leaves `energy_j` empty everywhere). Readings between rows are
//! interpolated linearly; past the last row the last values are held, and windows that run past
//! the end are warned about.

use crate::error::SensorError;
use crate::sensor::{retain_positions, EnergySensor, ReadKind};
use std::path::{Path, PathBuf};
use wattbench_core::window::interpolate;
use wattbench_core::{Capabilities, DeviceInfo, DeviceKind, Reading, Warning};

const HEADER: [&str; 4] = ["t_s", "device", "power_w", "energy_j"];

#[derive(Debug, Clone, Default)]
struct Track {
    power: Vec<(f64, f64)>,
    energy: Vec<(f64, f64)>,
}

#[derive(Debug)]
pub struct ReplaySensor {
    devices: Vec<DeviceInfo>,
    tracks: Vec<Track>,
    end_s: f64,
}

impl ReplaySensor {
    pub fn open(path: &Path) -> Result<Self, SensorError> {
        let text = std::fs::read_to_string(path).map_err(|source| SensorError::ReplayIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, SensorError> {
        let err = |line: usize, column: usize, message: String| SensorError::ReplayParse {
            path: PathBuf::from(path),
            line,
            column,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (hline, header) = lines.next().ok_or_else(|| {
            err(
                1,
                1,
                format!(
                    "the trace is empty; expected the header {}",
                    HEADER.join(",")
                ),
            )
        })?;
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        if names != HEADER {
            let column = names
                .iter()
                .zip(HEADER)
                .position(|(a, b)| *a != b)
                .unwrap_or(names.len().min(4))
                + 1;
            return Err(err(
                hline + 1,
                column,
                format!(
                    "the header must be exactly {} (found {})",
                    HEADER.join(","),
                    header.trim()
                ),
            ));
        }
        let mut ids: Vec<String> = Vec::new();
        let mut tracks: Vec<Track> = Vec::new();
        let mut last_t: Vec<f64> = Vec::new();
        let mut end_s: f64 = 0.0;
        for (i, line) in lines {
            let ln = i + 1;
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != 4 {
                return Err(err(
                    ln,
                    fields.len().min(4) + 1,
                    format!(
                        "expected 4 fields ({}), found {}",
                        HEADER.join(","),
                        fields.len()
                    ),
                ));
            }
            let number = |col: usize, optional: bool| -> Result<Option<f64>, SensorError> {
                let f = fields[col];
                if f.is_empty() {
                    return if optional {
                        Ok(None)
                    } else {
                        Err(err(ln, col + 1, format!("{} is empty", HEADER[col])))
                    };
                }
                match f.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Some(v)),
                    _ => Err(err(
                        ln,
                        col + 1,
                        format!("{} {:?} is not a number", HEADER[col], f),
                    )),
                }
            };
            let t = number(0, false)?.expect("t_s is required; this is a bug");
            if t < 0.0 {
                return Err(err(ln, 1, format!("t_s {t} is negative")));
            }
            if fields[1].is_empty() {
                return Err(err(ln, 2, "device is empty".into()));
            }
            let power = number(2, true)?;
            let energy = number(3, true)?;
            if let Some(p) = power.filter(|p| *p < 0.0) {
                return Err(err(ln, 3, format!("power_w {p} is negative")));
            }
            let d = match ids.iter().position(|id| id == fields[1]) {
                Some(d) => d,
                None => {
                    ids.push(fields[1].to_string());
                    tracks.push(Track::default());
                    last_t.push(f64::NEG_INFINITY);
                    ids.len() - 1
                }
            };
            if t < last_t[d] {
                return Err(err(
                    ln,
                    1,
                    format!(
                        "t_s {t} goes back in time for device {} (previous {})",
                        fields[1], last_t[d]
                    ),
                ));
            }
            last_t[d] = t;
            end_s = end_s.max(t);
            if let Some(p) = power {
                tracks[d].power.push((t, p));
            }
            if let Some(e) = energy {
                tracks[d].energy.push((t, e));
            }
        }
        if ids.is_empty() {
            return Err(err(
                hline + 2,
                1,
                "the trace has a header but no rows".into(),
            ));
        }
        let devices = ids
            .iter()
            .zip(&tracks)
            .enumerate()
            .map(|(i, (id, tr))| DeviceInfo {
                id: id.clone(),
                index: i as u32,
                kind: DeviceKind::Simulated,
                sensor: "replay".into(),
                name: format!("replay of {}", path.display()),
                uuid: None,
                driver_version: None,
                power_limits: None,
                capabilities: Capabilities {
                    energy_counter: !tr.energy.is_empty(),
                    instant_power: !tr.power.is_empty(),
                    ..Capabilities::default()
                },
            })
            .collect();
        Ok(ReplaySensor {
            devices,
            tracks,
            end_s,
        })
    }

    /// Time of the trace's last row.
    pub fn end_s(&self) -> f64 {
        self.end_s
    }
}

/// The track's value at `t`, `None` for a track without values.
fn at(pts: &[(f64, f64)], t: f64) -> Option<f64> {
    (!pts.is_empty()).then(|| interpolate(pts, t))
}

impl EnergySensor for ReplaySensor {
    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn read(&mut self, t_s: f64, _kind: ReadKind) -> Result<Vec<Reading>, SensorError> {
        Ok(self
            .tracks
            .iter()
            .map(|tr| Reading {
                energy_j: at(&tr.energy, t_s),
                power_w: at(&tr.power, t_s),
                ..Reading::default()
            })
            .collect())
    }

    fn retain(&mut self, keep: &[usize]) {
        retain_positions(&mut self.devices, keep);
        retain_positions(&mut self.tracks, keep);
    }

    fn window_warnings(&self, _t0_s: f64, t1_s: f64) -> Vec<Warning> {
        if t1_s > self.end_s + 1e-3 {
            vec![Warning::ReplayTraceEnded {
                trace_end_s: self.end_s,
                window_s: t1_s,
            }]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReplaySensor, SensorError> {
        ReplaySensor::parse(Path::new("trace.csv"), text)
    }

    #[test]
    fn interpolates_power_and_energy_per_device() {
        let mut s =
            parse("t_s,device,power_w,energy_j\n0,a,100,0\n1,a,300,200\n0,b,50,\n2,b,50,\n")
                .unwrap();
        assert_eq!(s.devices().len(), 2);
        assert!(!s.devices()[1].capabilities.energy_counter);
        let r = s.read(0.5, ReadKind::Tick).unwrap();
        assert_eq!(r[0].power_w, Some(200.0));
        assert_eq!(r[0].energy_j, Some(100.0));
        assert_eq!(r[1].energy_j, None);
        assert_eq!(s.read(5.0, ReadKind::Tick).unwrap()[0].power_w, Some(300.0));
        assert_eq!(s.window_warnings(0.0, 5.0).len(), 1);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("t_s,device,power_w,energy_j\n0,a,100,\n0.5,a,abc,\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3, column 3") && e.contains("\"abc\" is not a number"),
            "{e}"
        );
        let e = parse("t,device,power_w,energy_j\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1, column 1") && e.contains("header"),
            "{e}"
        );
        let e = parse("t_s,device,power_w,energy_j\n0,a,1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("expected 4 fields"),
            "{e}"
        );
        let e = parse("t_s,device,power_w,energy_j\n1,a,1,\n0,a,1,\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3, column 1") && e.contains("back in time"),
            "{e}"
        );
        assert!(parse("").unwrap_err().to_string().contains("empty"));
        assert!(parse("t_s,device,power_w,energy_j\n")
            .unwrap_err()
            .to_string()
            .contains("no rows"));
    }
}
