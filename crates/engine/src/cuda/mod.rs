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
pub(crate) mod capture;
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
/// compiled on first use in the process for the GPU's generation (sm_90, Hopper, where the GPU
/// has it, so that kernels can let programmatic dependents start; else sm_80, Ampere), loaded on
/// first use on each GPU.
pub(crate) fn function(
    dev: &CudaDevice,
    module: &str,
    source: &str,
    defines: &[String],
    name: &str,
) -> Result<CudaFunction> {
    function_for(dev, module, source, defines, name, None)
}

/// [`function`] for the virtual architecture `arch` (such as `compute_90a`), for kernels that need
/// a newer GPU (the caller checks that the GPU has it), or for the GPU's generation (`None`).
pub(crate) fn function_for(
    dev: &CudaDevice,
    module: &str,
    source: &str,
    defines: &[String],
    name: &str,
    arch: Option<&'static str>,
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
    let hopper = ctx.compute_capability().is_ok_and(|(major, _)| major >= 9);
    let arch = arch.unwrap_or(if hopper { "compute_90" } else { "compute_80" });
    let ptx_key = format!("{module}@{arch}");
    let ptx = {
        let mut cache = PTX
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !cache.contains_key(&ptx_key) {
            let opts = cudarc::nvrtc::CompileOptions {
                options: defines.to_vec(),
                arch: Some(arch),
                ..Default::default()
            };
            let src = format!("{COMMON}\n{source}");
            let p = cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| {
                candle_core::Error::Msg(format!("compiling the {module} kernels: {e}"))
            })?;
            cache.insert(ptx_key.clone(), p.to_src());
        }
        cache[&ptx_key].clone()
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

/// Whether kernels on `dev`'s GPU are queued as programmatic dependents of the kernel before
/// them: on Hopper and later (where the kernels wait for it with `griddepcontrol.wait`), unless
/// `WATTBENCH_PDL=0`.
pub(crate) fn dependent_launches(dev: &CudaDevice) -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    static GPUS: OnceLock<Mutex<HashMap<usize, bool>>> = OnceLock::new();
    if !*ENV.get_or_init(|| std::env::var("WATTBENCH_PDL").map_or(true, |v| v != "0")) {
        return false;
    }
    let ctx = dev.cuda_stream().context().clone();
    *GPUS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(ctx.ordinal())
        .or_insert_with(|| ctx.compute_capability().is_ok_and(|(major, _)| major >= 9))
}

/// A kernel launch: its arguments (device addresses and plain values, held until the launch),
/// queued as a programmatic dependent of the kernel before it where [`dependent_launches`] says
/// so. The kernel must begin with `wait_for_previous()` (common.cuh) before it reads or writes
/// device memory.
pub(crate) struct Launch<'a> {
    func: &'a CudaFunction,
    dev: &'a CudaDevice,
    held: Vec<Box<u64>>,
}

impl<'a> Launch<'a> {
    pub(crate) fn new(func: &'a CudaFunction, dev: &'a CudaDevice) -> Self {
        Self {
            func,
            dev,
            held: Vec::with_capacity(24),
        }
    }

    /// A plain value of at most 8 bytes (an integer, a float, a device address).
    pub(crate) fn value<T: Copy>(&mut self, v: T) -> &mut Self {
        assert!(std::mem::size_of::<T>() <= 8, "kernel argument over 8 bytes");
        let mut b = Box::new(0u64);
        // SAFETY: the box holds 8 bytes, T at most 8 (checked above); unaligned write.
        unsafe { std::ptr::write_unaligned(&mut *b as *mut u64 as *mut T, v) };
        self.held.push(b);
        self
    }

    /// The device address of a slice or view.
    pub(crate) fn slice<T>(&mut self, s: &impl cudarc::driver::DevicePtr<T>) -> &mut Self {
        let stream = self.dev.cuda_stream();
        let (ptr, _sync) = s.device_ptr(&stream);
        self.value(ptr)
    }

    /// Queues the kernel.
    ///
    /// # Safety
    /// The arguments must match the kernel's parameters, and the grid must keep its accesses
    /// inside the memory they describe.
    pub(crate) unsafe fn launch(&mut self, cfg: cudarc::driver::LaunchConfig) -> Result<()> {
        use cudarc::driver::sys;
        let stream = self.dev.cuda_stream();
        driver(stream.context().bind_to_thread())?;
        let mut args: Vec<*mut std::ffi::c_void> = self
            .held
            .iter()
            .map(|b| &**b as *const u64 as *mut std::ffi::c_void)
            .collect();
        // SAFETY: a zeroed attribute value is a valid union; the field set is the one the id
        // names.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: dependent_launches(self.dev) as u32,
        };
        if config.numAttrs > 0 {
            mark_dependent(self.func);
        }
        // SAFETY: the arguments live in `held` through the call, which copies them; the caller
        // vouches for their match with the kernel.
        let r = unsafe {
            sys::cuLaunchKernelEx(
                &config,
                self.func.cu_function(),
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        driver(r.result())
    }
}

static DEPENDENT: OnceLock<Mutex<std::collections::HashSet<usize>>> = OnceLock::new();

/// Records that `f` was launched as a programmatic dependent (it waits for the kernel before it
/// with `griddepcontrol.wait`), so that a captured graph may give it a programmatic edge.
pub(crate) fn mark_dependent(f: &CudaFunction) {
    DEPENDENT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(f.cu_function() as usize);
}

/// Whether kernel `f` waits for the kernel before it ([`mark_dependent`]).
pub(crate) fn is_dependent(f: cudarc::driver::sys::CUfunction) -> bool {
    DEPENDENT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(f as usize))
}
