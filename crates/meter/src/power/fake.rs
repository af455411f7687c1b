//! `fake:FILE`: simulated GPUs whose power-limit state lives in a JSON file, reread on every call
//! and rewritten (atomically) on every set call, which it also records. Tests use it to check what
//! a process changed and left behind, even after killing it. A missing file starts as one
//! simulated H100 (700 W default, bounds 200–700 W).
//!
//! Besides `gpus`, the file may say `"may_change": false` (a user who is not root),
//! `"enforce": false` (the driver accepts limits but keeps enforcing the old one) and
//! `"fail_calls": [N, ..]` (the Nth set call, counting from 1, fails).

use super::{GpuPower, PowerControl, PowerError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FakeState {
    pub gpus: Vec<GpuPower>,
    #[serde(default = "yes")]
    pub may_change: bool,
    #[serde(default = "yes")]
    pub enforce: bool,
    #[serde(default)]
    pub fail_calls: Vec<usize>,
    /// Every set call, in order.
    #[serde(default)]
    pub calls: Vec<SetCall>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetCall {
    pub index: u32,
    pub mw: u32,
    pub ok: bool,
}

impl FakeState {
    /// `n` simulated H100s at their default limit.
    pub fn h100s(n: u32) -> FakeState {
        FakeState {
            gpus: (0..n)
                .map(|i| GpuPower {
                    index: i,
                    uuid: format!("GPU-fake-{i:04}"),
                    name: "Simulated H100".into(),
                    limit_mw: Some(700_000),
                    enforced_mw: Some(700_000),
                    default_mw: Some(700_000),
                    min_mw: Some(200_000),
                    max_mw: Some(700_000),
                })
                .collect(),
            may_change: true,
            enforce: true,
            fail_calls: Vec::new(),
            calls: Vec::new(),
        }
    }

    pub fn read(path: &Path) -> Result<FakeState, PowerError> {
        let text = std::fs::read_to_string(path).map_err(|e| unavailable(path, &e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| unavailable(path, &e.to_string()))
    }

    pub fn write(&self, path: &Path) -> Result<(), PowerError> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(self).expect("the fake state serializes");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| unavailable(path, &e.to_string()))
    }
}

fn unavailable(path: &Path, reason: &str) -> PowerError {
    PowerError::Unavailable {
        reason: format!("simulated GPUs in {}: {reason}", path.display()),
    }
}

pub struct FakeControl {
    path: PathBuf,
}

impl FakeControl {
    pub fn open(path: &str) -> Result<FakeControl, PowerError> {
        let path = PathBuf::from(path);
        let path = std::path::absolute(&path).unwrap_or(path);
        if !path.exists() {
            FakeState::h100s(1).write(&path)?;
        }
        FakeState::read(&path)?;
        Ok(FakeControl { path })
    }
}

impl PowerControl for FakeControl {
    fn spec(&self) -> String {
        format!("fake:{}", self.path.display())
    }

    fn gpus(&mut self) -> Result<Vec<GpuPower>, PowerError> {
        Ok(FakeState::read(&self.path)?.gpus)
    }

    fn may_change(&self) -> bool {
        FakeState::read(&self.path).is_ok_and(|s| s.may_change)
    }

    fn set_limit(&mut self, index: u32, mw: u32) -> Result<(), PowerError> {
        let mut s = FakeState::read(&self.path)?;
        let call = s.calls.len() + 1;
        let found = super::found(&s.gpus);
        let Some(g) = s.gpus.iter_mut().find(|g| g.index == index) else {
            return Err(PowerError::NoSuchGpu { index, found });
        };
        let label = g.label();
        let result = if !s.may_change {
            Err(PowerError::NotRoot)
        } else if !g.supported() {
            Err(PowerError::Unsupported { gpu: label })
        } else if s.fail_calls.contains(&call) {
            Err(PowerError::SetFailed {
                gpu: label,
                watts: f64::from(mw) / 1000.0,
                reason: format!("simulated failure of set call {call}"),
            })
        } else {
            g.limit_mw = Some(mw);
            if s.enforce {
                g.enforced_mw = Some(mw);
            }
            Ok(())
        };
        s.calls.push(SetCall {
            index,
            mw,
            ok: result.is_ok(),
        });
        s.write(&self.path)?;
        result
    }
}
