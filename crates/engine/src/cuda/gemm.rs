//! Matrix products with few rows (a decode step's `x [rows, in] @ w[out, in]^T`, up to 64 rows)
//! on the tensor cores, reading the weights at close to the GPU's memory bandwidth.
//!
//! cuBLAS serves these shapes with kernels built for large products; on an H100 at 64 rows they
//! read a 7B model's weights at 2.0–2.5 TB/s of ~3.3. Here (see `gemm.cu`) each block streams the
//! weights of `bn` output columns through shared memory with `stages` asynchronous copies in
//! flight, and when there are too few column tiles to fill the GPU the inner dimension is split
//! over several blocks whose f32 partial sums the last one adds up, in a fixed order.
//!
//! Which is fastest depends on the shape and the GPU, so the first product of each shape on a GPU
//! times cuBLAS and a few configurations of the kernel on the real operands (CUDA events, a few
//! milliseconds once) and keeps the fastest for the rest of the process. Larger products (prefill)
//! stay with cuBLAS; `WATTBENCH_GEMM=cublas` sends all of them there.

use super::{driver, function};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor,
};
use cudarc::driver::sys::{CUevent_flags, CUfunction_attribute};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use half::bf16;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const SOURCE: &str = include_str!("gemm.cu");
const BK: usize = 64;
/// The most rows the kernels take (16 per m-tile, up to 4 m-tiles).
pub const MAX_ROWS: usize = 64;
const SHARED_MAX: usize = 227 * 1024;

/// How a product is cut up: `bn` output columns per block (64, 128 or 256; 64 per warp), each
/// column group's slice shared by `wk` warps (1, 2 or 4), `stages` weight slices in flight per
/// block (2 to 8), and `splits` blocks over the inner dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmConfig {
    pub bn: usize,
    pub wk: usize,
    pub stages: usize,
    pub splits: usize,
}

/// The block shapes the first product of a shape tries (with every sensible split count).
const CANDIDATES: [(usize, usize, usize); 4] = [(128, 2, 4), (64, 2, 4), (64, 4, 4), (256, 1, 3)];
const SPLITS: [usize; 5] = [1, 2, 3, 4, 8];

fn m_tiles(rows: usize) -> usize {
    rows.div_ceil(16).next_power_of_two()
}

impl GemmConfig {
    fn threads(&self) -> usize {
        self.bn / 64 * self.wk * 32
    }

    /// Dynamic shared memory: the pipeline's slices, or the warps' sums handed over at the end.
    fn shared_bytes(&self, rows: usize) -> usize {
        let pipeline = self.stages * (self.bn + 16 * m_tiles(rows)) * BK * 2;
        let handover = (self.wk - 1) * (self.bn / 64) * 32 * (m_tiles(rows) * 8 * 4) * 4;
        pipeline.max(handover)
    }

    fn validate(&self, rows: usize, n: usize, k: usize) -> Result<()> {
        if !matches!(self.bn, 64 | 128 | 256)
            || !matches!(self.wk, 1 | 2 | 4)
            || !(2..=8).contains(&self.stages)
            || self.threads() > 256
        {
            candle_core::bail!("gemm: unsupported configuration {self:?}");
        }
        if rows == 0 || rows > MAX_ROWS || n % self.bn != 0 || k % BK != 0 {
            candle_core::bail!("gemm: shape {rows}×{k} · {k}×{n} does not fit {self:?}");
        }
        if self.splits == 0 || self.splits > k / BK {
            candle_core::bail!("gemm: {} splits of {} slices", self.splits, k / BK);
        }
        if self.shared_bytes(rows) > SHARED_MAX {
            candle_core::bail!("gemm: {self:?} at {rows} rows needs too much shared memory");
        }
        Ok(())
    }
}

/// Whether the kernels serve `x [rows, k] @ w[n, k]^T`: CUDA, bf16, contiguous, 16-byte aligned,
/// `rows ≤ 64`, `n` a multiple of 64 and `k` of 64, and not turned off.
pub fn serves(x: &Tensor, w: &Tensor) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| {
        super::enabled() && std::env::var("WATTBENCH_GEMM").map_or(true, |v| v != "cublas")
    });
    let aligned = |t: &Tensor| t.layout().start_offset() % 8 == 0 && t.is_contiguous();
    on && x.device().is_cuda()
        && x.dtype() == DType::BF16
        && w.dtype() == DType::BF16
        && x.rank() == 2
        && w.rank() == 2
        && aligned(x)
        && aligned(w)
        && x.dim(0).is_ok_and(|r| (1..=MAX_ROWS).contains(&r))
        && w.dim(0).is_ok_and(|n| n % 64 == 0)
        && x.dim(1)
            .is_ok_and(|k| k % BK == 0 && w.dim(1).is_ok_and(|wk| wk == k))
}

/// What serves a shape: cuBLAS (through candle) or the kernel with a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Cublas,
    Kernel(GemmConfig),
}

/// `x [rows, k] @ w[n, k]^T` ([`serves`] must hold) by the fastest of cuBLAS and the kernel's
/// configurations for this shape on this GPU, timed on first use.
pub fn matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    type Key = (usize, usize, usize, usize);
    static CHOICES: OnceLock<Mutex<HashMap<Key, Choice>>> = OnceLock::new();
    let Device::Cuda(dev) = x.device() else {
        candle_core::bail!("gemm: x is not on a CUDA device")
    };
    let (rows, k) = x.dims2()?;
    let n = w.dim(0)?;
    let key = (dev.cuda_stream().context().ordinal(), rows, n, k);
    let choices = CHOICES.get_or_init(Default::default);
    let known = choices
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    let choice = match known {
        Some(c) => c,
        None => {
            let c = tune(x, w)?.0;
            choices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, c);
            c
        }
    };
    run(x, w, choice)
}

/// `x [rows, k] @ w[n, k]^T` by `choice`.
pub fn run(x: &Tensor, w: &Tensor, choice: Choice) -> Result<Tensor> {
    match choice {
        Choice::Cublas => x.matmul(&w.t()?),
        Choice::Kernel(config) => x.apply_op2_no_bwd(w, &Gemm { config }),
    }
}

/// The choice for `x [rows, k] @ w[n, k]^T`, and every choice tried with its mean GPU time in
/// milliseconds over 20 runs on the real operands, fastest first.
pub fn tune(x: &Tensor, w: &Tensor) -> Result<(Choice, Vec<(Choice, f64)>)> {
    let (rows, k) = x.dims2()?;
    let n = w.dim(0)?;
    let mut choices = vec![Choice::Cublas];
    for (bn, wk, stages) in CANDIDATES {
        for splits in SPLITS {
            let c = GemmConfig {
                bn,
                wk,
                stages,
                splits,
            };
            if splits <= k / BK / 4 && c.validate(rows, n, k).is_ok() {
                choices.push(Choice::Kernel(c));
            }
        }
    }
    let mut timed = Vec::new();
    for c in choices {
        timed.push((c, gpu_ms(x, w, c, 20)?));
    }
    timed.sort_by(|a, b| a.1.total_cmp(&b.1));
    // cuBLAS unless the kernel is clearly faster: timings of ~10 µs products vary by a few percent.
    let cublas = timed
        .iter()
        .find(|(c, _)| *c == Choice::Cublas)
        .map(|t| t.1);
    let best = match (timed[0], cublas) {
        ((Choice::Kernel(_), ms), Some(b)) if ms > 0.97 * b => Choice::Cublas,
        ((c, _), _) => c,
    };
    Ok((best, timed))
}

/// Mean GPU milliseconds of `choice` for `x @ w^T` over `reps` runs, timed with CUDA events
/// behind a 2 ms busy kernel, so that every run is queued before the first starts and the
/// time is the GPU's, not the rate at which the host launches.
pub fn gpu_ms(x: &Tensor, w: &Tensor, choice: Choice, reps: usize) -> Result<f64> {
    let Device::Cuda(dev) = x.device() else {
        candle_core::bail!("gemm: x is not on a CUDA device")
    };
    let stream = dev.cuda_stream();
    let ctx = stream.context().clone();
    run(x, w, choice)?;
    let spin = function(dev, "wattbench_gemm_spin", SOURCE, &[], "spin")?;
    let start = driver(ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)))?;
    let end = driver(ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)))?;
    let ns: i64 = 2_000_000;
    let mut builder = stream.launch_builder(&spin);
    builder.arg(&ns);
    // SAFETY: `spin` takes one 64-bit integer and touches no memory.
    driver(unsafe { builder.launch(LaunchConfig::for_num_elems(1)) })?;
    driver(start.record(&stream))?;
    for _ in 0..reps {
        run(x, w, choice)?;
    }
    driver(end.record(&stream))?;
    Ok(driver(start.elapsed_ms(&end))? as f64 / reps as f64)
}

/// The split partial sums and the per-tile arrival counters of one GPU, grown as needed. The
/// engine runs a GPU's kernels on one stream, so one set per GPU is never used twice at once.
struct Work {
    partial: CudaSlice<f32>,
    counters: CudaSlice<u32>,
}

struct Gemm {
    config: GemmConfig,
}

impl CustomOp2 for Gemm {
    fn name(&self) -> &'static str {
        "wattbench-gemm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the gemm kernels run on CUDA only; this is a bug")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, k) = xl.shape().dims2()?;
        let (n, wk) = wl.shape().dims2()?;
        if wk != k || !xl.is_contiguous() || !wl.is_contiguous() {
            candle_core::bail!("gemm: x {xl:?} and w {wl:?} do not fit");
        }
        if xl.start_offset() % 8 != 0 || wl.start_offset() % 8 != 0 {
            candle_core::bail!("gemm: operands must start on a 16-byte boundary");
        }
        let dev = xs.device.clone();
        let config = self.config;
        config.validate(rows, n, k)?;
        let mt = m_tiles(rows);
        let func = function(
            &dev,
            &format!(
                "wattbench_gemm_{}_{}_{}",
                config.bn, config.wk, config.stages
            ),
            SOURCE,
            &[
                format!("-DBN={}", config.bn),
                format!("-DWK={}", config.wk),
                format!("-DSTAGES={}", config.stages),
            ],
            &format!("gemm_m{}", 16 * mt),
        )?;
        let smem = config.shared_bytes(rows);
        driver(func.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        ))?;
        let stream = dev.cuda_stream();
        let x = xs.as_cuda_slice::<bf16>()?.slice(xl.start_offset()..);
        let w = ws.as_cuda_slice::<bf16>()?.slice(wl.start_offset()..);
        // SAFETY: every element of `y` is written by the kernel before it is read.
        let mut y = driver(unsafe { stream.alloc::<bf16>(rows * n) })?;
        static WORK: OnceLock<Mutex<HashMap<usize, Work>>> = OnceLock::new();
        let mut all = WORK
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let ordinal = stream.context().ordinal();
        let tiles = n / config.bn;
        let need = if config.splits > 1 {
            config.splits * rows * n
        } else {
            1
        };
        let grow = all
            .get(&ordinal)
            .is_none_or(|w| w.partial.len() < need || w.counters.len() < tiles);
        if grow {
            let (p, c) = all
                .get(&ordinal)
                .map_or((0, 0), |w| (w.partial.len(), w.counters.len()));
            // SAFETY: partial sums are written by a split before the last block reads them.
            let partial = driver(unsafe { stream.alloc::<f32>(need.max(p)) })?;
            let counters = driver(stream.alloc_zeros::<u32>(tiles.max(c)))?;
            all.insert(ordinal, Work { partial, counters });
        }
        let work = all.get_mut(&ordinal).expect("inserted above");
        let (m_i, n_i, k_i) = (rows as i32, n as i32, k as i32);
        let cfg = LaunchConfig {
            grid_dim: (tiles as u32, config.splits as u32, 1),
            block_dim: (config.threads() as u32, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        let mut builder = stream.launch_builder(&func);
        builder
            .arg(&x)
            .arg(&w)
            .arg(&mut y)
            .arg(&mut work.partial)
            .arg(&mut work.counters)
            .arg(&m_i)
            .arg(&n_i)
            .arg(&k_i);
        // SAFETY: the arguments match the kernel's signature; the shapes were checked above
        // (n a multiple of bn, k of 64, rows ≤ 16·mt), the partial buffer holds splits·rows·n
        // floats and the counters one per column tile, all zero between launches.
        driver(unsafe { builder.launch(cfg) })?;
        drop(all);
        Ok((CudaStorage::wrap_cuda_slice(y, dev), Shape::from((rows, n))))
    }
}
