//! Power limits of NVIDIA GPUs through NVML (`nvmlDeviceSetPowerManagementLimit`, which needs root).

use super::{GpuPower, PowerControl, PowerError};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

pub struct NvmlControl {
    nvml: Nvml,
}

impl NvmlControl {
    pub fn open() -> Result<NvmlControl, PowerError> {
        let nvml = crate::nvml::init().map_err(|e| PowerError::Unavailable {
            reason: e.to_string(),
        })?;
        Ok(NvmlControl { nvml })
    }
}

fn unavailable(e: NvmlError) -> PowerError {
    PowerError::Unavailable {
        reason: format!("NVML: {e}"),
    }
}

impl PowerControl for NvmlControl {
    fn spec(&self) -> String {
        "nvml".into()
    }

    fn gpus(&mut self) -> Result<Vec<GpuPower>, PowerError> {
        let n = self.nvml.device_count().map_err(unavailable)?;
        let mut out = Vec::new();
        for i in 0..n {
            let d = self.nvml.device_by_index(i).map_err(unavailable)?;
            let bounds = d.power_management_limit_constraints().ok();
            out.push(GpuPower {
                index: i,
                uuid: d.uuid().map_err(unavailable)?,
                name: d.name().unwrap_or_else(|_| "NVIDIA GPU".into()),
                limit_mw: d.power_management_limit().ok(),
                enforced_mw: d.enforced_power_limit().ok(),
                default_mw: d.power_management_limit_default().ok(),
                min_mw: bounds.as_ref().map(|b| b.min_limit),
                max_mw: bounds.as_ref().map(|b| b.max_limit),
            });
        }
        Ok(out)
    }

    fn may_change(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn set_limit(&mut self, index: u32, mw: u32) -> Result<(), PowerError> {
        let mut d = self.nvml.device_by_index(index).map_err(unavailable)?;
        let label = format!(
            "gpu{index} ({}, {})",
            d.name().unwrap_or_default(),
            d.uuid().unwrap_or_default()
        );
        d.set_power_management_limit(mw).map_err(|e| match e {
            NvmlError::NoPermission => PowerError::NotRoot,
            NvmlError::NotSupported => PowerError::Unsupported { gpu: label },
            e => PowerError::SetFailed {
                gpu: label,
                watts: f64::from(mw) / 1000.0,
                reason: e.to_string(),
            },
        })
    }
}
