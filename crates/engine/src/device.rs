//! `--device` and `--dtype`.

use crate::error::EngineError;
use candle_core::{DType, Device};

/// `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, EngineError> {
    match s {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| EngineError::Device {
                    device: s.to_string(),
                    message: "write cuda or cuda:N with N a GPU index".into(),
                })?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                return Err(EngineError::FeatureMissing {
                    device: s.to_string(),
                    feature: "cuda",
                });
            }
            Device::new_cuda(ordinal).map_err(|e| EngineError::Device {
                device: s.to_string(),
                message: e.to_string(),
            })
        }
        other => Err(EngineError::Device {
            device: other.to_string(),
            message: "use cpu, cuda or cuda:N".into(),
        }),
    }
}

/// `bf16`, `f16` or `f32`; `auto` is bf16 on GPUs and f32 on the CPU.
pub fn parse_dtype(s: &str, device: &Device) -> Result<DType, EngineError> {
    match s {
        "auto" if device.is_cpu() => Ok(DType::F32),
        "auto" | "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        "f32" => Ok(DType::F32),
        other => Err(EngineError::Device {
            device: format!("dtype {other}"),
            message: "use bf16, f16, f32 or auto".into(),
        }),
    }
}
