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
            let device = Device::new_cuda(ordinal).map_err(|e| EngineError::Device {
                device: s.to_string(),
                message: e.to_string(),
            })?;
            #[cfg(feature = "cuda")]
            if let Device::Cuda(d) = &device {
                crate::cuda::prepare(d).map_err(|e| EngineError::Device {
                    device: s.to_string(),
                    message: e.to_string(),
                })?;
            }
            Ok(device)
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

/// Total memory of a GPU device in bytes (None on the CPU), for out-of-memory suggestions.
pub fn memory_bytes(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        d.cuda_stream().context().bind_to_thread().ok()?;
        return cudarc::driver::result::mem_get_info()
            .ok()
            .map(|(_, total)| total as u64);
    }
    let _ = device;
    None
}

/// The memory free on `device` now (CUDA), or None.
pub fn free_bytes(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        d.cuda_stream().context().bind_to_thread().ok()?;
        return cudarc::driver::result::mem_get_info()
            .ok()
            .map(|(free, _)| free as u64);
    }
    let _ = device;
    None
}

/// `cpu` or `cuda:N`, as `--device` takes it.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        candle_core::DeviceLocation::Cpu => "cpu".into(),
    }
}

/// CUDA devices `cuda:N` for each of `indices`, each with a stream of its own (what NCCL needs
/// to run a collective beside candle's work), set up as [`parse_device`] sets them up.
pub fn cuda_devices(indices: &[usize]) -> Result<Vec<Device>, EngineError> {
    if !cfg!(feature = "cuda") {
        return Err(EngineError::FeatureMissing {
            device: format!("--gpus {indices:?}"),
            feature: "cuda",
        });
    }
    #[cfg(feature = "cuda")]
    if let Ok(count) = cudarc::driver::CudaContext::device_count() {
        let count = count.max(0) as usize;
        if let Some(&missing) = indices.iter().find(|&&i| i >= count) {
            return Err(EngineError::Device {
                device: format!("cuda:{missing}"),
                message: format!(
                    "GPU {missing} does not exist: CUDA sees {count} GPU(s) here (0..{}); pass --gpus with indices below {count}, or --tensor-parallel {count} or less",
                    count.saturating_sub(1)
                ),
            });
        }
    }
    indices
        .iter()
        .map(|&i| {
            let name = format!("cuda:{i}");
            let device = Device::new_cuda_with_stream(i).map_err(|e| EngineError::Device {
                device: name.clone(),
                message: e.to_string(),
            })?;
            #[cfg(feature = "cuda")]
            if let Device::Cuda(d) = &device {
                crate::cuda::prepare(d).map_err(|e| EngineError::Device {
                    device: name.clone(),
                    message: e.to_string(),
                })?;
            }
            Ok(device)
        })
        .collect()
}
