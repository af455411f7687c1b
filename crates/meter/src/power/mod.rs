//! GPU power limits: reading them, setting them, and putting them back.
//!
//! [`PowerControl`] is the seam: `nvml` drives real NVIDIA GPUs (setting a limit needs root), and
//! `fake:FILE` simulates GPUs whose state lives in a JSON file that records every set call, so that
//! tests can kill the process and check what it left. The [`journal`] holds the original limits
//! of every GPU changed, written before the first change, so that a crash or a SIGKILL is repaired
//! by the next start.

pub mod fake;
pub mod journal;
pub mod nvml;

use std::fmt;

/// The power-limit state of one GPU, in milliwatts as NVML counts them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpuPower {
    /// NVML index.
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// The limit set now; None where power management is unsupported.
    pub limit_mw: Option<u32>,
    /// The limit the GPU enforces (the lowest of all limits in force).
    pub enforced_mw: Option<u32>,
    pub default_mw: Option<u32>,
    pub min_mw: Option<u32>,
    pub max_mw: Option<u32>,
}

impl GpuPower {
    /// Whether the limit can be read and changed here at all.
    pub fn supported(&self) -> bool {
        self.limit_mw.is_some() && self.min_mw.is_some() && self.max_mw.is_some()
    }

    /// `gpuN (NAME, UUID)`.
    pub fn label(&self) -> String {
        format!("gpu{} ({}, {})", self.index, self.name, self.uuid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("unknown power control {spec:?}; use nvml (NVIDIA GPUs) or fake:STATE.json (simulated GPUs, for tests)")]
    UnknownControl { spec: String },
    #[error("power limits are unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("GPU {index} does not exist (GPUs here: {found})")]
    NoSuchGpu { index: u32, found: String },
    #[error("no GPU has UUID {uuid}")]
    NoSuchUuid { uuid: String },
    #[error("{gpu} does not support power management: its power limit cannot be read or set")]
    Unsupported { gpu: String },
    #[error("setting power limits needs root (NVML refuses other users); run with sudo, or pass --dry-run to see what would be set")]
    NotRoot,
    #[error("{gpu}: {cap} is outside this GPU's bounds of {min:.0}–{max:.0} W; choose limits within them")]
    OutOfBounds {
        gpu: String,
        /// `150 W`, or `20% (140 W)`.
        cap: String,
        min: f64,
        max: f64,
    },
    #[error("{gpu}: {cap} needs the GPU's default limit, which it does not report; give the limit in watts")]
    NoDefault { gpu: String, cap: String },
    #[error("{gpu}: setting the power limit to {watts:.0} W failed: {reason}")]
    SetFailed {
        gpu: String,
        watts: f64,
        reason: String,
    },
    #[error("{gpu}: the limit was set to {watts:.0} W but the GPU enforces {enforced:.0} W (another limit is in force, or the driver ignored the call)")]
    NotEnforced {
        gpu: String,
        watts: f64,
        enforced: f64,
    },
    #[error("the power-limit journal {path}: {reason}")]
    Journal { path: String, reason: String },
    #[error("invalid power limit {text:?}: {reason}; give watts (250 or 250W) or a share of the default limit (70%)")]
    InvalidCap { text: String, reason: String },
}

/// Reads and sets GPU power limits.
pub trait PowerControl: Send {
    /// How to open this control again (`nvml`, `fake:/abs/path.json`), as journals record it.
    fn spec(&self) -> String;
    /// Every GPU, with its limits now.
    fn gpus(&mut self) -> Result<Vec<GpuPower>, PowerError>;
    /// Whether this process may change limits (root, for NVML).
    fn may_change(&self) -> bool;
    /// Sets GPU `index`'s limit (does not check that it took effect; see [`set_checked`]).
    fn set_limit(&mut self, index: u32, mw: u32) -> Result<(), PowerError>;
}

/// Opens `nvml` or `fake:FILE`.
pub fn open(spec: &str) -> Result<Box<dyn PowerControl>, PowerError> {
    if spec == "nvml" {
        return Ok(Box::new(nvml::NvmlControl::open()?));
    }
    if let Some(path) = spec.strip_prefix("fake:") {
        return Ok(Box::new(fake::FakeControl::open(path)?));
    }
    Err(PowerError::UnknownControl { spec: spec.into() })
}

/// GPU `index`, by NVML index.
pub fn find(gpus: &[GpuPower], index: u32) -> Result<&GpuPower, PowerError> {
    gpus.iter()
        .find(|g| g.index == index)
        .ok_or_else(|| PowerError::NoSuchGpu {
            index,
            found: found(gpus),
        })
}

fn found(gpus: &[GpuPower]) -> String {
    if gpus.is_empty() {
        return "none".into();
    }
    gpus.iter()
        .map(|g| g.index.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets GPU `index` to `mw` and checks that the GPU now enforces it.
pub fn set_checked(control: &mut dyn PowerControl, index: u32, mw: u32) -> Result<(), PowerError> {
    control.set_limit(index, mw)?;
    let gpus = control.gpus()?;
    let g = find(&gpus, index)?;
    match g.enforced_mw.or(g.limit_mw) {
        Some(e) if e == mw => Ok(()),
        Some(e) => Err(PowerError::NotEnforced {
            gpu: g.label(),
            watts: f64::from(mw) / 1000.0,
            enforced: f64::from(e) / 1000.0,
        }),
        None => Err(PowerError::Unsupported { gpu: g.label() }),
    }
}

/// A power limit as asked for: watts, or a share of the GPU's default limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    Watts(f64),
    Percent(f64),
}

impl Cap {
    /// `250`, `250W`, `250 w` or `70%`.
    pub fn parse(text: &str) -> Result<Cap, PowerError> {
        let t = text.trim();
        let bad = |reason: &str| PowerError::InvalidCap {
            text: text.into(),
            reason: reason.into(),
        };
        let (num, percent) = if let Some(p) = t.strip_suffix('%') {
            (p.trim(), true)
        } else {
            (t.trim_end_matches(['W', 'w']).trim(), false)
        };
        let v: f64 = num.parse().map_err(|_| bad("not a number"))?;
        if !(v.is_finite() && v > 0.0) {
            return Err(bad("it must be positive"));
        }
        if percent && v > 100.0 {
            return Err(bad("a share of the default limit is at most 100%"));
        }
        Ok(if percent {
            Cap::Percent(v)
        } else {
            Cap::Watts(v)
        })
    }

    /// The limit for `gpu` in milliwatts, checked against its bounds.
    pub fn resolve(&self, gpu: &GpuPower) -> Result<u32, PowerError> {
        let (Some(min), Some(max)) = (gpu.min_mw, gpu.max_mw) else {
            return Err(PowerError::Unsupported { gpu: gpu.label() });
        };
        let mw = match *self {
            Cap::Watts(w) => (w * 1000.0).round(),
            Cap::Percent(p) => {
                let Some(d) = gpu.default_mw else {
                    return Err(PowerError::NoDefault {
                        gpu: gpu.label(),
                        cap: self.to_string(),
                    });
                };
                // Whole watts, as NVML and nvidia-smi show limits.
                (f64::from(d) * p / 100.0 / 1000.0).round() * 1000.0
            }
        };
        if mw < f64::from(min) || mw > f64::from(max) {
            let watts = mw / 1000.0;
            return Err(PowerError::OutOfBounds {
                gpu: gpu.label(),
                cap: match self {
                    Cap::Watts(_) => format!("{watts:.0} W"),
                    Cap::Percent(p) => format!("{p}% ({watts:.0} W)"),
                },
                min: f64::from(min) / 1000.0,
                max: f64::from(max) / 1000.0,
            });
        }
        Ok(mw as u32)
    }
}

impl fmt::Display for Cap {
    /// `250W` or `70%`: the canonical form stored with runs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::Watts(w) => write!(f, "{w}W"),
            Cap::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100() -> GpuPower {
        GpuPower {
            index: 0,
            uuid: "GPU-0".into(),
            name: "H100".into(),
            limit_mw: Some(700_000),
            enforced_mw: Some(700_000),
            default_mw: Some(700_000),
            min_mw: Some(200_000),
            max_mw: Some(700_000),
        }
    }

    #[test]
    fn caps_parse_as_watts_or_shares() {
        assert_eq!(Cap::parse("250").unwrap(), Cap::Watts(250.0));
        assert_eq!(Cap::parse("175W").unwrap(), Cap::Watts(175.0));
        assert_eq!(Cap::parse(" 70% ").unwrap(), Cap::Percent(70.0));
        assert_eq!(Cap::parse("70%").unwrap().to_string(), "70%");
        assert_eq!(Cap::parse("250w").unwrap().to_string(), "250W");
        for bad in ["", "abc", "-5", "0", "120%", "inf"] {
            let e = Cap::parse(bad).unwrap_err().to_string();
            assert!(e.contains("give watts"), "{bad}: {e}");
        }
    }

    #[test]
    fn caps_resolve_within_bounds_only() {
        let g = h100();
        assert_eq!(Cap::Watts(300.0).resolve(&g).unwrap(), 300_000);
        assert_eq!(Cap::Percent(50.0).resolve(&g).unwrap(), 350_000);
        assert_eq!(Cap::Percent(33.3).resolve(&g).unwrap(), 233_000);
        let e = Cap::Watts(150.0).resolve(&g).unwrap_err().to_string();
        assert!(
            e.contains(": 150 W is outside this GPU's bounds of 200–700 W"),
            "{e}"
        );
        let e = Cap::Percent(20.0).resolve(&g).unwrap_err().to_string();
        assert!(e.contains("20% (140 W) is outside"), "{e}");
        let mut none = h100();
        none.min_mw = None;
        let e = Cap::Watts(300.0).resolve(&none).unwrap_err().to_string();
        assert!(e.contains("does not support power management"), "{e}");
        let mut no_default = h100();
        no_default.default_mw = None;
        assert!(Cap::Percent(70.0).resolve(&no_default).is_err());
    }
}
