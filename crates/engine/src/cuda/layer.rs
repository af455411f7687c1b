//! The element-wise work of a layer, fused: residual addition with RMSNorm, SiLU with the up
//! projection, and the split of the fused QKV projection into rotated query heads and the key and
//! value caches. Each replaces two to seven candle operations (and their intermediate tensors)
//! with one kernel; arithmetic is in f32 with one rounding to bf16 per output.

use super::{driver, function, with_slice};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor,
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
        let func = function(&dev, MODULE, SOURCE, &[], "add_rms_norm")?;
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
        let func = function(&dev, MODULE, SOURCE, &[], "silu_mul")?;
        let y = ys.as_cuda_slice::<bf16>()?.slice(yl.start_offset()..);
        // SAFETY: the kernel writes all `total` elements.
        let mut out = driver(unsafe { dev.cuda_stream().alloc::<bf16>(total) })?;
        let (total_i, f_i) = (total as i64, f as i32);
        let cfg = LaunchConfig {
            grid_dim: (total.div_ceil(256).clamp(1, 132 * 16) as u32, 1, 1),
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
    /// The layer's caches `[B, nkv, capacity, head_dim]`, written at columns `offset..offset + T`.
    pub k_cache: &'a Tensor,
    pub v_cache: &'a Tensor,
    pub offset: usize,
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
            && self.offset + t <= cap
            && self.cos.dims() == [self.cos.dim(0)?, hd / 2]
            && hd.is_multiple_of(2)
            && hd / 2 <= 1024;
        if !fits {
            candle_core::bail!(
                "qkv split: projection {:?}, positions {:?} and cache {:?} at column {} do not fit",
                yl.shape(),
                self.positions.shape(),
                self.k_cache.shape(),
                self.offset
            );
        }
        let dev = ys.device.clone();
        let func = function(&dev, MODULE, SOURCE, &[], "qkv_rope_cache")?;
        let y = ys.as_cuda_slice::<bf16>()?.slice(yl.start_offset()..);
        // SAFETY: the kernel writes every query element.
        let mut q = driver(unsafe { dev.cuda_stream().alloc::<bf16>(b * nh * t * hd) })?;
        let ints = [t as i32, nh as i32, nkv as i32, hd as i32];
        let (c_head, c_batch) = ((cap * hd) as i64, (nkv * cap * hd) as i64);
        let (offset, interleaved) = (self.offset as i32, self.interleaved as i32);
        let cfg = LaunchConfig {
            grid_dim: ((nh + 2 * nkv) as u32, (b * t) as u32, 1),
            block_dim: ((hd / 2) as u32, 1, 1),
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
                            l.arg(kc).arg(vc);
                            for i in &ints {
                                l.arg(i);
                            }
                            l.arg(&c_batch).arg(&c_head).arg(&offset).arg(&interleaved);
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
