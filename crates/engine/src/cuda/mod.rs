//! The engine's own CUDA kernels, compiled from the `.cu` files beside this one by NVRTC once per
//! process (no CUDA toolkit is needed where the binary runs, only the driver and NVRTC):
//! decode and prompt attention ([`attention`]), the decode step's matrix products through cuBLASLt
//! with a timed choice of algorithm ([`gemm`]), the element-wise work of a layer fused around its
//! matrix products ([`layer`]), temperature/top-p sampling in one kernel ([`sample`]), and the copy
//! of sampled tokens to the host behind the GPU's work ([`tokens`]). They serve bf16 models on
//! CUDA; everything else runs on candle's own operations. Setting `WATTBENCH_KERNELS=candle` turns
//! them all off, for comparisons. With them, decode steps are replayed from a CUDA graph
//! ([`graph`]).
//!
//! Synthetic weights of every dtype are computed on the GPU that holds them ([`synth`]), whatever
//! `WATTBENCH_KERNELS` says.

pub mod attention;
pub mod gemm;
pub mod graph;
pub mod layer;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod sample;
pub mod synth;
pub mod tokens;

use candle_core::cuda::{CudaDevice, WrapErr};
use candle_core::{Result, Storage, Tensor};
use cudarc::driver::CudaFunction;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const COMMON: &str = include_str!("common.cuh");

/// Whether the engine's kernels are on (`WATTBENCH_KERNELS` is not `candle`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("WATTBENCH_KERNELS").map_or(true, |v| v != "candle"))
}

/// Sets up a new CUDA device for the engine: no cross-stream events, which would cost two event
/// creations per allocation.
pub fn prepare(dev: &CudaDevice) -> Result<()> {
    // SAFETY: the engine runs every operation of a device on the device's one stream, so no
    // tensor is used on another stream.
    unsafe { dev.disable_event_tracking() };
    Ok(())
}

/// Kernel `name` of the module `module` (source `source` with `defines`) on `dev`'s GPU:
/// compiled on first use in the process, loaded on first use on each GPU.
pub(crate) fn function(
    dev: &CudaDevice,
    module: &str,
    source: &str,
    defines: &[String],
    name: &str,
) -> Result<CudaFunction> {
    type Key = (String, String, usize);
    static PTX: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    static FUNCS: OnceLock<Mutex<HashMap<Key, CudaFunction>>> = OnceLock::new();
    let stream = dev.cuda_stream();
    let ctx = stream.context();
    let key = (module.to_string(), name.to_string(), ctx.ordinal());
    let funcs = FUNCS.get_or_init(Default::default);
    if let Some(f) = funcs.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(f.clone());
    }
    let ptx = {
        let mut cache = PTX
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !cache.contains_key(module) {
            let opts = cudarc::nvrtc::CompileOptions {
                options: defines.to_vec(),
                arch: Some("compute_80"),
                ..Default::default()
            };
            let src = format!("{COMMON}\n{source}");
            let p = cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| {
                candle_core::Error::Msg(format!("compiling the {module} kernels: {e}"))
            })?;
            cache.insert(module.to_string(), p.to_src());
        }
        cache[module].clone()
    };
    let f = ctx
        .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
        .w()?
        .load_function(name)
        .w()?;
    funcs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, f.clone());
    Ok(f)
}

/// Runs `f` with the device slice of `t` (from its first element) and its CUDA device.
pub(crate) fn with_slice<T: candle_core::cuda::CudaDType, R>(
    t: &Tensor,
    f: impl FnOnce(&cudarc::driver::CudaView<'_, T>, &CudaDevice) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(s) = &*storage else {
        candle_core::bail!("a CUDA kernel was given a tensor that is not on a CUDA device")
    };
    if !layout.is_contiguous() {
        candle_core::bail!("a CUDA kernel was given a non-contiguous tensor {layout:?}")
    }
    let view = s.as_cuda_slice::<T>()?.slice(layout.start_offset()..);
    f(&view, &s.device)
}

/// The device address of `t`'s first element (`t` contiguous, on CUDA), for kernel arguments
/// that may be null; the caller keeps `t` alive until the kernel is queued.
pub(crate) fn address<T: candle_core::cuda::CudaDType + cudarc::driver::DeviceRepr>(
    t: &Tensor,
) -> Result<u64> {
    use cudarc::driver::DevicePtr;
    with_slice::<T, _>(t, |view, dev| {
        let stream = dev.cuda_stream();
        let (ptr, _sync) = view.device_ptr(&stream);
        Ok(ptr)
    })
}

/// A driver error as a candle error.
pub(crate) fn driver<T>(r: std::result::Result<T, cudarc::driver::DriverError>) -> Result<T> {
    r.w()
}
