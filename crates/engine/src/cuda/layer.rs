//! The element-wise work of a layer, fused: residual addition with RMSNorm, SiLU with the up
//! projection, and the split of the fused QKV projection into rotated query heads and the key and
//! value caches. Each replaces two to seven candle operations (and their intermediate tensors)
//! with one kernel; arithmetic is in f32 with one rounding to bf16 per output. And the move of a
//! decode step replayed from a CUDA graph to its next cache column ([`next_column`]).

use super::{driver, function, with_slice};
use crate::model::Column;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp3, DType, Device, Layout, Result, Shape, Tensor,
};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use half::bf16;

const SOURCE: &str = include_str!("layer.cu");
const MODULE: &str = "wattbench_layer";

fn cpu_only<T>() -> Result<T> {
    candle_core::bail!("the fused layer kernels run on CUDA only; this is a bug")
}

fn check(what: &str, l: &Layout, dtype: DType) -> Result<()> {
    if dtype != DType::BF16 || !l.is_contiguous() {
        candle_core::bail!("{what}: expected a contiguous bf16 tensor, got {dtype:?} {l:?}");
    }
    Ok(())
}

struct AddRmsNorm {
    eps: f32,
}

impl CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "wattbench-add-rms-norm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_only()
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        rs: &CudaStorage,
        rl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        for (what, l, s) in [("x", xl, xs), ("residual", rl, rs), ("weight", wl, ws)] {
            check(&format!("add_rms_norm {what}"), l, BackendStorage::dtype(s))?;
        }
        let n = *xl.dims().last().unwrap_or(&0);
        if rl.shape() != xl.shape() || wl.dims() != [n] || n == 0 {
            candle_core::bail!("add_rms_norm: shapes {xl:?} {rl:?} {wl:?} do not fit");
        }
        let rows = xl.shape().elem_count() / n;
        let dev = xs.device.clone();
        // Eight elements per access where rows and starts fall on 16-byte boundaries.
        let v8 = n.is_multiple_of(8)
            && [xl, rl, wl]
                .iter()
                .all(|l| l.start_offset().is_multiple_of(8));
        let name = if v8 {
            "add_rms_norm_v8"
        } else {
            "add_rms_norm"
        };
        let func = function(&dev, MODULE, SOURCE, &[], name)?;
        let x = xs.as_cuda_slice::<bf16>()?.slice(xl.start_offset()..);
        let r = rs.as_cuda_slice::<bf16>()?.slice(rl.start_offset()..);
        let w = ws.as_cuda_slice::<bf16>()?.slice(wl.start_offset()..);
        // SAFETY: the kernel writes all 2 * rows * n elements.
        let mut out = driver(unsafe { dev.cuda_stream().alloc::<bf16>(2 * rows * n) })?;
        let (rows_i, n_i) = (rows as i32, n as i32);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (
                n.div_ceil(8).next_multiple_of(32).clamp(32, 1024) as u32,
                1,
                1,
            ),
            shared_mem_bytes: 0,
        };
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(&x)
            .arg(&r)
            .arg(&w)
            .arg(&mut out)
            .arg(&rows_i)
            .arg(&n_i)
            .arg(&self.eps);
        // SAFETY: the arguments match the kernel; one block per row of n elements.
        driver(unsafe { b.launch(cfg) })?;
        let mut dims = vec![2];
        dims.extend_from_slice(xl.dims());
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(dims)))
    }
}

/// `(x + r, rms_norm(x + r) * w)`: the new residual stream and the next block's input.
pub fn add_rms_norm(x: &Tensor, r: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let out = x.apply_op3_no_bwd(r, w, &AddRmsNorm { eps })?;
    Ok((out.get(0)?, out.get(1)?))
}

struct SiluMul;

impl CustomOp1 for SiluMul {
    fn name(&self) -> &'static str {
        "wattbench-silu-mul"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only()
    }

    fn cuda_fwd(&self, ys: &CudaStorage, yl: &Layout) -> Result<(CudaStorage, Shape)> {
        check("silu_mul", yl, BackendStorage::dtype(ys))?;
        let two_f = *yl.dims().last().unwrap_or(&0);
        if !two_f.is_multiple_of(2) {
            candle_core::bail!("silu_mul: the last dimension {two_f} is not [gate | up]");
        }
        let f = two_f / 2;
        let total = yl.shape().elem_count() / 2;
        let dev = ys.device.clone();
        // Eight elements per access where rows and the start fall on 16-byte boundaries.
        let v8 = f.is_multiple_of(8) && yl.start_offset().is_multiple_of(8);
        let (name, per) = if v8 {
            ("silu_mul_v8", 8)
        } else {
            ("silu_mul", 1)
        };
        let func = function(&dev, MODULE, SOURCE, &[], name)?;
        let y = ys.as_cuda_slice::<bf16>()?.slice(yl.start_offset()..);
        // SAFETY: the kernel writes all `total` elements.
        let mut out = driver(unsafe { dev.cuda_stream().alloc::<bf16>(total) })?;
        let (total_i, f_i) = ((total / per) as i64, (f / per) as i32);
        let cfg = LaunchConfig {
            grid_dim: ((total / per).div_ceil(256).clamp(1, 132 * 16) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(&y).arg(&mut out).arg(&total_i).arg(&f_i);
        // SAFETY: the arguments match the kernel; the grid-stride loop stays below `total`.
        driver(unsafe { b.launch(cfg) })?;
        let mut dims = yl.dims().to_vec();
        *dims.last_mut().expect("checked above") = f;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(dims)))
    }
}

/// `silu(gate) * up` of `y = [gate | up]` (last dimension 2f) -> last dimension f.
pub fn silu_mul(y: &Tensor) -> Result<Tensor> {
    y.apply_op1_no_bwd(&SiluMul)
}

/// Where the keys and values of one layer go, and how queries and keys are rotated.
pub struct QkvSplit<'a> {
    /// Rotary tables `[context, head_dim / 2]`, bf16.
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    /// Rotary position of every token, u32 `[B, T]`.
    pub positions: &'a Tensor,
    /// The layer's caches `[B, nkv, capacity, head_dim]`, written at columns from `column` on.
    pub k_cache: &'a Tensor,
    pub v_cache: &'a Tensor,
    pub column: Column<'a>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub interleaved: bool,
}

impl CustomOp1 for QkvSplit<'_> {
    fn name(&self) -> &'static str {
        "wattbench-qkv-rope-cache"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_only()
    }

    fn cuda_fwd(&self, ys: &CudaStorage, yl: &Layout) -> Result<(CudaStorage, Shape)> {
        check("qkv split", yl, BackendStorage::dtype(ys))?;
        let (b, t, width) = yl.shape().dims3()?;
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let (cb, cnkv, cap, chd) = self.k_cache.dims4()?;
        let fits = width == (nh + 2 * nkv) * hd
            && self.positions.dims() == [b, t]
            && self.positions.dtype() == DType::U32
            && (cb, cnkv, chd) == (b, nkv, hd)
            && self.v_cache.shape() == self.k_cache.shape()
            && match self.column {
                Column::Host(o) => o + t <= cap,
                Column::Device(c) => c.dims() == [1] && c.dtype() == DType::U32,
            }
            && self.cos.dims() == [self.cos.dim(0)?, hd / 2]
            && hd.is_multiple_of(2);
        if !fits {
            candle_core::bail!(
                "qkv split: projection {:?}, positions {:?} and cache {:?} at column {:?} do not fit",
                yl.shape(),
                self.positions.shape(),
                self.k_cache.shape(),
                self.column
            );
        }
        let dev = ys.device.clone();
        // Four rotated pairs per work item where every head starts on a 16-byte boundary.
        let v4 = hd.is_multiple_of(8)
            && yl.start_offset().is_multiple_of(8)
            && [self.cos, self.sin, self.k_cache, self.v_cache]
                .iter()
                .all(|t| t.layout().start_offset().is_multiple_of(8));
        let (name, pairs) = if v4 {
            ("qkv_rope_cache_v4", 4)
        } else {
            ("qkv_rope_cache", 1)
        };
        let func = function(&dev, MODULE, SOURCE, &[], name)?;
        let y = ys.as_cuda_slice::<bf16>()?.slice(yl.start_offset()..);
        // SAFETY: the kernel writes every query element.
        let mut q = driver(unsafe { dev.cuda_stream().alloc::<bf16>(b * nh * t * hd) })?;
        let ints = [t as i32, nh as i32, nkv as i32, hd as i32];
        let (c_head, c_batch) = ((cap * hd) as i64, (nkv * cap * hd) as i64);
        let (offset, col) = match self.column {
            Column::Host(o) => (o as i32, 0u64),
            Column::Device(c) => (0, super::address::<u32>(c)?),
        };
        let interleaved = self.interleaved as i32;
        let rows = (b * t) as i32;
        let items = b * t * (nh + 2 * nkv) * (hd / 2 / pairs);
        let cfg = LaunchConfig {
            grid_dim: (items.div_ceil(256).clamp(1, 132 * 16) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        with_slice::<bf16, _>(self.cos, |cos, _| {
            with_slice::<bf16, _>(self.sin, |sin, _| {
                with_slice::<u32, _>(self.positions, |pos, _| {
                    with_slice::<bf16, _>(self.k_cache, |kc, _| {
                        with_slice::<bf16, _>(self.v_cache, |vc, _| {
                            let stream = dev.cuda_stream();
                            let mut l = stream.launch_builder(&func);
                            l.arg(&y).arg(cos).arg(sin).arg(pos).arg(&mut q);
                            // The caches are written through their device pointers: the engine
                            // runs on one stream and holds no other view of these columns.
                            l.arg(kc).arg(vc).arg(&col);
                            for i in &ints {
                                l.arg(i);
                            }
                            l.arg(&c_batch).arg(&c_head).arg(&offset).arg(&interleaved);
                            l.arg(&rows);
                            // SAFETY: the arguments match the kernel; shapes were checked above,
                            // so every write stays inside q and the caches.
                            driver(unsafe { l.launch(cfg) }).map(|_| ())
                        })
                    })
                })
            })
        })?;
        Ok((
            CudaStorage::wrap_cuda_slice(q, dev),
            Shape::from((b, nh, t, hd)),
        ))
    }
}

/// Splits the fused projection `y [B, T, (nh + 2 nkv) hd]`: returns the rotated queries
/// `[B, nh, T, hd]` and writes the rotated keys and the values into the caches.
pub fn qkv_split(y: &Tensor, split: &QkvSplit<'_>) -> Result<Tensor> {
    y.apply_op1_no_bwd(split)
}

/// Moves a step replayed from a CUDA graph on by one column: `col` (u32 `[1]`), the rotary
/// positions `pos` (u32 `[B, 1]`) and, when given, the sampling step `step` (i64 `[1]`), all on
/// the device and changed in place.
pub fn next_column(col: &Tensor, pos: &Tensor, step: Option<&Tensor>) -> Result<()> {
    let b = pos.elem_count();
    if col.dims() != [1] || col.dtype() != DType::U32 || pos.dtype() != DType::U32 {
        candle_core::bail!("next_column: col {col:?} and positions {pos:?} must be u32");
    }
    if step.is_some_and(|s| s.dims() != [1] || s.dtype() != DType::I64) {
        candle_core::bail!("next_column: step {step:?} must be i64 [1]");
    }
    let step = match step {
        Some(s) => super::address::<i64>(s)?,
        None => 0u64,
    };
    let (col, pos_p) = (super::address::<u32>(col)?, super::address::<u32>(pos)?);
    let Device::Cuda(dev) = pos.device() else {
        candle_core::bail!("next_column runs on CUDA only");
    };
    let func = function(dev, MODULE, SOURCE, &[], "next_column")?;
    let b_i = b as i32;
    let cfg = LaunchConfig {
        grid_dim: (b.div_ceil(256).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let stream = dev.cuda_stream();
    let mut l = stream.launch_builder(&func);
    l.arg(&col).arg(&pos_p).arg(&b_i).arg(&step);
    // SAFETY: the arguments match the kernel; it touches col[0], step[0] and pos[0..b].
    driver(unsafe { l.launch(cfg) })?;
    Ok(())
}
