//! Decode-step products in bands (`bands.cu`): `x [rows, in] · w [out, in]^T` for up to 64 rows on
//! Hopper, each SM streaming one band of `out / SMs` weight rows (rounded up to 8) over all of
//! `in`, through a ring of TMA copies as deep as its shared memory allows.

use super::{driver, function_for};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use half::bf16;
use std::ffi::c_void;

const SOURCE: &str = include_str!("bands.cu");
/// Most token rows, K columns per stage, widest band (wgmma's largest N × 4 chunks).
pub const MAX_ROWS: usize = 64;
const BK: usize = 64;
const MAX_BAND: usize = 256;
/// The shared memory a block may have on Hopper, less room to start the ring on a 1024-byte
/// boundary and its barriers.
const SHARED: usize = 232_448;
const MAX_STAGES: usize = 24;

/// The band of a product with `out` weight rows on a GPU of `sms` SMs: rows per block (a multiple
/// of 8, at most 256), or `None` where the weights are too many rows for one band per SM.
pub fn band(out: usize, sms: usize) -> Option<usize> {
    let w = out.div_ceil(8).div_ceil(sms.max(1)) * 8;
    (w <= MAX_BAND).then_some(w)
}

/// Ring stages for a band of `w` rows: as many as fit in a block's shared memory.
/// 64-column boxes a stage (`WATTBENCH_BAND_BOXES`, 2 by default).
fn boxes() -> usize {
    std::env::var("WATTBENCH_BAND_BOXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize)
        .clamp(1, 4)
}

fn stages(w: usize) -> usize {
    let stage = (w + MAX_ROWS) * BK * boxes() * 2;
    ((SHARED - 1024 - 16 * MAX_STAGES) / stage).clamp(2, MAX_STAGES)
}

/// Whether `x [rows, in] · w [out, in]^T` runs here on `dev`: Hopper, bf16, contiguous,
/// `rows <= 64`, `out` and `in` multiples of 8, 16-byte aligned starts.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    let candle_core::Device::Cuda(dev) = x.device() else {
        return false;
    };
    let hopper = dev
        .cuda_stream()
        .context()
        .compute_capability()
        .is_ok_and(|(major, _)| major == 9);
    let (Ok((rows, inner)), Ok((out, w_inner))) = (x.dims2(), w.dims2()) else {
        return false;
    };
    hopper
        && x.dtype() == DType::BF16
        && w.dtype() == DType::BF16
        && x.is_contiguous()
        && w.is_contiguous()
        && inner == w_inner
        && (1..=MAX_ROWS).contains(&rows)
        && out.is_multiple_of(8)
        && inner.is_multiple_of(8)
        && band(out, sms(dev)).is_some()
}

fn sms(dev: &candle_core::cuda::CudaDevice) -> usize {
    use cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT;
    dev.cuda_stream()
        .context()
        .attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_or(132, |n| n as usize)
}

/// `x [rows, in] · w [out, in]^T -> [rows, out]`, bf16 with f32 sums; `applies` must hold.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.apply_op2_no_bwd(
        w,
        &Bands {
            flat: None,
            flags: 0,
        },
    )
}

/// For timing: the same product reading its weights from `flat` (a buffer of at least
/// `blocks * band * in` elements, taken as weights stored tile after tile), skipping the
/// arithmetic (`flags` 1) or the tokens' copies (`flags` 2). The result is meaningless with any.
pub fn timing_variant(x: &Tensor, w: &Tensor, flat: Option<&Tensor>, flags: i32) -> Result<Tensor> {
    let flat = flat.map(super::address::<bf16>).transpose()?;
    x.apply_op2_no_bwd(w, &Bands { flat, flags })
}

/// Elements a buffer for [`timing_variant`] needs for weights of `out` rows of `inner`.
pub fn flat_len(dev: &candle_core::Device, out: usize, inner: usize) -> Option<usize> {
    let candle_core::Device::Cuda(d) = dev else {
        return None;
    };
    let w = band(out, sms(d))?;
    let k = BK * boxes();
    Some(out.div_ceil(w) * w * inner.div_ceil(k) * k)
}

/// A TMA tensor map, passed to the kernel by value.
#[repr(transparent)]
struct Tmap(cudarc::driver::sys::CUtensorMap);

// SAFETY: a tensor map is plain bytes that the kernel takes by value (`Tmap` in `bands.cu`).
unsafe impl cudarc::driver::DeviceRepr for Tmap {}

/// The tensor map of a row-major bf16 matrix `[rows, cols]` at `ptr` in boxes of `box_rows` rows
/// of 64 columns (128 bytes), stored in shared memory in the 128-byte swizzle; rows and columns
/// past the end read as zeros.
fn tmap(ptr: u64, rows: usize, cols: usize, box_rows: usize) -> Result<Tmap> {
    use cudarc::driver::sys;
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    let dims = [cols as u64, rows as u64];
    let strides = [(cols * 2) as u64];
    let boxes = [BK as u32, box_rows as u32];
    let steps = [1u32, 1];
    // SAFETY: the arrays have the rank's lengths (2, and 1 stride); the map is written by the
    // call and read only after it succeeded.
    unsafe {
        let r = sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            2,
            ptr as *mut c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        );
        driver(r.result())?;
        Ok(Tmap(map.assume_init()))
    }
}

/// The kernel for bands of `w` rows, compiled for them on first use and allowed its ring.
fn kernel(dev: &candle_core::cuda::CudaDevice, w: usize) -> Result<CudaFunction> {
    let waitn = std::env::var("WATTBENCH_BAND_WAIT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(3)
        .clamp(1, stages(w).saturating_sub(2).max(1));
    let dual = std::env::var("WATTBENCH_BAND_DUAL").map_or(w <= 168, |v| v == "1");
    let defines = [
        format!("-DNC={}", w / 64),
        format!("-DR={}", w % 64),
        format!("-DWAITN={waitn}"),
        format!("-DDUAL={}", dual as u8),
        format!("-DBOXES={}", boxes()),
    ];
    let module = format!("wattbench_bands_{w}_{waitn}_{}_{}", dual as u8, boxes());
    let f = function_for(dev, &module, SOURCE, &defines, "band_gemm", "compute_90a")?;
    driver(f.set_attribute(
        cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        SHARED as i32,
    ))?;
    Ok(f)
}

struct Bands {
    flat: Option<u64>,
    flags: i32,
}

impl CustomOp2 for Bands {
    fn name(&self) -> &'static str {
        "wattbench-band-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the band products run on CUDA only; this is a bug")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, inner) = xl.shape().dims2()?;
        let (out, w_inner) = wl.shape().dims2()?;
        let bf = |s: &CudaStorage| BackendStorage::dtype(s) == DType::BF16;
        let aligned = xl.start_offset().is_multiple_of(8) && wl.start_offset().is_multiple_of(8);
        let dev = xs.device.clone();
        let width = band(out, sms(&dev));
        let fits = inner == w_inner
            && xl.is_contiguous()
            && wl.is_contiguous()
            && bf(xs)
            && bf(ws)
            && aligned
            && (1..=MAX_ROWS).contains(&rows)
            && out.is_multiple_of(8)
            && inner.is_multiple_of(8);
        let (Some(w), true) = (width, fits) else {
            candle_core::bail!("band product: x {xl:?} and w {wl:?} do not fit");
        };
        let f = kernel(&dev, w)?;
        let stream = dev.cuda_stream();
        let x = xs.as_cuda_slice::<bf16>()?.slice(xl.start_offset()..);
        let wv = ws.as_cuda_slice::<bf16>()?.slice(wl.start_offset()..);
        let xp = {
            use cudarc::driver::DevicePtr;
            x.device_ptr(&stream).0
        };
        let wp = {
            use cudarc::driver::DevicePtr;
            wv.device_ptr(&stream).0
        };
        let wmap = tmap(wp, out, inner, w)?;
        let xmap = tmap(xp, rows, inner, MAX_ROWS)?;
        // SAFETY: the kernel writes all rows * out elements.
        let mut y = driver(unsafe { stream.alloc::<bf16>(rows * out) })?;
        let stages = stages(w);
        let cfg = LaunchConfig {
            grid_dim: (out.div_ceil(w) as u32, 1, 1),
            block_dim: (160, 1, 1),
            shared_mem_bytes: (1024 + stages * ((w + MAX_ROWS) * BK * boxes() * 2 + 16)) as u32,
        };
        let (m, n, k, s) = (rows as i32, out as i32, inner as i32, stages as i32);
        let (flat, flags) = (self.flat.unwrap_or(0), self.flags);
        let mut b = stream.launch_builder(&f);
        b.arg(&wmap)
            .arg(&xmap)
            .arg(&mut y)
            .arg(&m)
            .arg(&n)
            .arg(&k)
            .arg(&s)
            .arg(&flat)
            .arg(&flags);
        // SAFETY: the tensor maps describe x [rows, inner] and w [out, inner], alive until the
        // kernel is queued (and, as the product's operands, until it has run); y holds rows * out
        // elements; the shared memory holds the ring, its barriers and the alignment room.
        driver(unsafe { b.launch(cfg) })?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((rows, out)),
        ))
    }
}
