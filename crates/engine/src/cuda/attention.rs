//! Fused attention on CUDA: for the decode step (one query per sequence), one pass over each
//! sequence's cached keys and values with an online softmax; for a prompt, causal attention of its
//! queries on the tensor cores ([`prefill_attention`]).
//!
//! Matrix products over the cache would run one matrix–vector product per (sequence, head), a
//! shape cuBLAS serves poorly, plus a mask addition and a softmax each reading and writing the
//! scores. Here one block handles one (sequence, query head); each warp walks a share of the keys,
//! each lane holding `head_dim / 32` dimensions, and the warps' partial softmax states are merged
//! at the end. Keys before a sequence's first real column (its left padding) are skipped. Scores
//! and sums are kept in f32; inputs and outputs are bf16. The kernel is compiled once per process
//! by NVRTC.

use super::layer::QkvSplit;
use super::{driver, function, with_slice};
use crate::model::Column;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use half::bf16;

const SOURCE: &str = include_str!("attention.cu");

const WARPS: u32 = 4;

/// Whether prompts go through [`prefill_attention`]: unless `WATTBENCH_PREFILL_ATTENTION` is
/// `matmul` (matrix products, an additive mask and a softmax, for comparisons).
pub fn prefill_fused() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WATTBENCH_PREFILL_ATTENTION").map_or(true, |v| v != "matmul"))
}

/// Whether the fused kernels serve this case: CUDA, bf16, head dimension 64 or 128.
pub fn supported(q: &Tensor, head_dim: usize) -> bool {
    q.device().is_cuda() && q.dtype() == candle_core::DType::BF16 && matches!(head_dim, 64 | 128)
}

struct DecodeAttention<'a> {
    /// First visible key column of each sequence (its left padding), u32 `[B]` on the device.
    start: &'a Tensor,
    /// The step's cache column on the device (u32 `[1]`), when the caches are given whole and
    /// the keys to read end there (a step replayed from a CUDA graph).
    col: Option<&'a Tensor>,
    scale: f32,
    /// Keys each warp takes at a time.
    unroll: u32,
}

impl CustomOp3 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "wattbench-decode-attention"
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
        candle_core::bail!("fused decode attention runs on CUDA only; this is a bug")
    }

    fn cuda_fwd(
        &self,
        qs: &CudaStorage,
        ql: &Layout,
        ks: &CudaStorage,
        kl: &Layout,
        vs: &CudaStorage,
        vl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, nh, t, hd) = ql.shape().dims4()?;
        let (kb, nkv, len, khd) = kl.shape().dims4()?;
        if t != 1 || kb != b || khd != hd || vl.shape() != kl.shape() || vl.stride() != kl.stride()
        {
            candle_core::bail!(
                "decode attention: q {:?} and cache {:?} do not fit",
                ql.shape(),
                kl.shape()
            );
        }
        let ks_ = kl.stride();
        if !ql.is_contiguous() || ks_[3] != 1 || ks_[2] != hd || ks_[0] != nkv * ks_[1] {
            candle_core::bail!("decode attention: unexpected layouts q {ql:?} k {kl:?}");
        }
        if !matches!(hd, 64 | 128) {
            candle_core::bail!(
                "fused decode attention supports head dimensions 64 and 128, not {hd}"
            );
        }
        let dev = qs.device.clone();
        let func = function(
            &dev,
            &format!("wattbench_attention_{hd}_{}", self.unroll),
            SOURCE,
            &[
                format!("-DHEAD_DIM={hd}"),
                format!("-DUNROLL={}", self.unroll),
            ],
            "decode_attention",
        )?;
        let q = qs.as_cuda_slice::<bf16>()?.slice(ql.start_offset()..);
        let k = ks.as_cuda_slice::<bf16>()?.slice(kl.start_offset()..);
        let v = vs.as_cuda_slice::<bf16>()?.slice(vl.start_offset()..);
        // SAFETY: every element of `y` is written by the kernel before it is read.
        let mut y = driver(unsafe { dev.cuda_stream().alloc::<bf16>(b * nh * hd) })?;
        let (nh_i, nkv_i, len_i) = (nh as i32, nkv as i32, len as i32);
        let (k_batch, k_head) = (ks_[0] as i64, ks_[1] as i64);
        let cfg = LaunchConfig {
            grid_dim: (nh as u32, b as u32, 1),
            block_dim: (32 * WARPS, 1, 1),
            shared_mem_bytes: 0,
        };
        let col = match self.col {
            Some(c) => super::address::<u32>(c)?,
            None => 0u64,
        };
        with_slice::<u32, _>(self.start, |start, _| {
            let stream = dev.cuda_stream();
            let mut builder = stream.launch_builder(&func);
            builder
                .arg(&q)
                .arg(&k)
                .arg(&v)
                .arg(&mut y)
                .arg(start)
                .arg(&col)
                .arg(&nh_i)
                .arg(&nkv_i)
                .arg(&k_batch)
                .arg(&k_head)
                .arg(&len_i)
                .arg(&self.scale);
            // SAFETY: the arguments match the kernel's signature; the grid covers (head,
            // sequence) and every index stays inside the tensors checked above.
            driver(unsafe { builder.launch(cfg) }).map(|_| ())
        })?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((b, nh, 1, hd)),
        ))
    }
}

/// Keys each warp of the attention kernel takes at a time.
pub const UNROLL: u32 = 2;

/// Attention of one query per sequence, `q [B, nh, 1, hd]`, over cache views `k`, `v`
/// `[B, nkv, len, hd]`; sequence `b` sees keys from `start[b]` (u32 `[B]` on the device) up to
/// the view's end, or up to and including column `col[0]` (u32 `[1]` on the device) when `col`
/// is given. Returns `[B, nh, 1, hd]`.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    start: &Tensor,
    col: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    decode_attention_unrolled(q, k, v, start, col, scale, UNROLL)
}

/// [`decode_attention`] with `unroll` keys per warp at a time (1 to 16), for tuning.
pub fn decode_attention_unrolled(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    start: &Tensor,
    col: Option<&Tensor>,
    scale: f32,
    unroll: u32,
) -> Result<Tensor> {
    if col.is_some_and(|c| c.dims() != [1] || c.dtype() != candle_core::DType::U32) {
        candle_core::bail!("decode attention: col must be u32 [1], got {col:?}");
    }
    if start.dims() != [q.dim(0)?] || start.dtype() != candle_core::DType::U32 {
        candle_core::bail!("decode attention: start must be u32 [batch], got {start:?}");
    }
    if !(1..=16).contains(&unroll) {
        candle_core::bail!("decode attention: unroll {unroll} is not in 1..=16");
    }
    q.apply_op3_no_bwd(
        k,
        v,
        &DecodeAttention {
            start,
            col,
            scale,
            unroll,
        },
    )
}

/// Whether a decode step attends straight from the fused QKV projection
/// ([`decode_attention_qkv`]): unless `WATTBENCH_DECODE_ATTENTION` is `split` (the QKV split
/// kernel, then [`decode_attention`], for comparisons).
pub fn decode_from_qkv() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WATTBENCH_DECODE_ATTENTION").map_or(true, |v| v != "split"))
}

struct DecodeQkvAttention<'a> {
    split: &'a QkvSplit<'a>,
    /// First visible key column of each sequence (its left padding), u32 `[B]` on the device.
    start: &'a Tensor,
    scale: f32,
}

impl CustomOp1 for DecodeQkvAttention<'_> {
    fn name(&self) -> &'static str {
        "wattbench-decode-attention-qkv"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("fused decode attention runs on CUDA only; this is a bug")
    }

    fn cuda_fwd(&self, ys: &CudaStorage, yl: &Layout) -> Result<(CudaStorage, Shape)> {
        let sp = self.split;
        let (b, t, width) = yl.shape().dims3()?;
        let (nh, nkv, hd) = (sp.heads, sp.kv_heads, sp.head_dim);
        let (cb, cnkv, cap, chd) = sp.k_cache.dims4()?;
        let fits = t == 1
            && ys.dtype() == candle_core::DType::BF16
            && yl.is_contiguous()
            && nkv > 0
            && nh.is_multiple_of(nkv)
            && width == (nh + 2 * nkv) * hd
            && matches!(hd, 64 | 128)
            && sp.positions.dims() == [b, 1]
            && sp.positions.dtype() == candle_core::DType::U32
            && (cb, cnkv, chd) == (b, nkv, hd)
            && sp.v_cache.shape() == sp.k_cache.shape()
            && sp.k_cache.is_contiguous()
            && sp.v_cache.is_contiguous()
            && sp.cos.dims() == [sp.cos.dim(0)?, hd / 2]
            && sp.sin.dims() == sp.cos.dims()
            // 8-byte accesses to the projection, the tables and the caches.
            && [yl.start_offset(), sp.cos.layout().start_offset(), sp.sin.layout().start_offset()]
                .iter()
                .chain([sp.k_cache.layout().start_offset(), sp.v_cache.layout().start_offset()].iter())
                .all(|o| o.is_multiple_of(4))
            && self.start.dims() == [b]
            && self.start.dtype() == candle_core::DType::U32
            && match sp.column {
                Column::Host(o) => o < cap,
                Column::Device(c) => c.dims() == [1] && c.dtype() == candle_core::DType::U32,
            };
        if !fits {
            candle_core::bail!(
                "decode attention: projection {:?}, positions {:?} and caches {:?} at column {:?} do not fit",
                yl.shape(),
                sp.positions.shape(),
                sp.k_cache.shape(),
                sp.column
            );
        }
        let dev = ys.device.clone();
        let func = function(
            &dev,
            &format!("wattbench_attention_{hd}_{UNROLL}"),
            SOURCE,
            &[format!("-DHEAD_DIM={hd}"), format!("-DUNROLL={UNROLL}")],
            "decode_attention_qkv",
        )?;
        let y = ys.as_cuda_slice::<bf16>()?.slice(yl.start_offset()..);
        // SAFETY: the kernel writes every element of `out` (each head of each sequence).
        let mut out = driver(unsafe { dev.cuda_stream().alloc::<bf16>(b * nh * hd) })?;
        let (offset, col) = match sp.column {
            Column::Host(o) => (o as i32, 0u64),
            Column::Device(c) => (0, super::address::<u32>(c)?),
        };
        let ints = [nh as i32, nkv as i32];
        let (k_batch, k_head) = ((nkv * cap * hd) as i64, (cap * hd) as i64);
        let (cap_i, interleaved) = (cap as i32, sp.interleaved as i32);
        let cfg = LaunchConfig {
            grid_dim: (nh as u32, b as u32, 1),
            block_dim: (32 * WARPS, 1, 1),
            shared_mem_bytes: 0,
        };
        with_slice::<bf16, _>(sp.cos, |cos, _| {
            with_slice::<bf16, _>(sp.sin, |sin, _| {
                with_slice::<u32, _>(sp.positions, |pos, _| {
                    with_slice::<bf16, _>(sp.k_cache, |kc, _| {
                        with_slice::<bf16, _>(sp.v_cache, |vc, _| {
                            with_slice::<u32, _>(self.start, |start, _| {
                                let stream = dev.cuda_stream();
                                let mut l = stream.launch_builder(&func);
                                l.arg(&y).arg(cos).arg(sin).arg(pos);
                                // The caches are written through their device pointers: the
                                // engine runs on one stream and holds no other view of the
                                // column written.
                                l.arg(kc).arg(vc).arg(kc).arg(vc);
                                l.arg(&mut out).arg(start).arg(&col);
                                l.arg(&offset);
                                for i in &ints {
                                    l.arg(i);
                                }
                                l.arg(&k_batch).arg(&k_head).arg(&cap_i).arg(&self.scale);
                                l.arg(&interleaved);
                                // SAFETY: the arguments match the kernel; shapes were checked
                                // above, so every read and write stays inside the tensors.
                                driver(unsafe { l.launch(cfg) }).map(|_| ())
                            })
                        })
                    })
                })
            })
        })?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((b, nh, 1, hd)),
        ))
    }
}

/// Decode attention straight from the fused QKV projection `y [B, 1, (nh + 2 nkv) hd]` of one
/// token per sequence: rotates the queries and keys as [`crate::cuda::layer::qkv_split`] does,
/// writes the keys and values into the caches at `split.column`, and attends over the keys from
/// `start[b]` up to and including that column, in one kernel. Returns `[B, nh, 1, hd]`.
pub fn decode_attention_qkv(
    y: &Tensor,
    split: &QkvSplit<'_>,
    start: &Tensor,
    scale: f32,
) -> Result<Tensor> {
    y.apply_op1_no_bwd(&DecodeQkvAttention {
        split,
        start,
        scale,
    })
}

struct PrefillAttention<'a> {
    /// First visible key column of each sequence (its left padding), u32 `[B]` on the device.
    start: &'a Tensor,
    /// Cache column of the first query.
    offset: usize,
    scale: f32,
}

/// Queries each block of the prompt kernel takes (`MQT` in the source), 16 a warp.
const PREFILL_QUERIES: usize = 64;

impl CustomOp3 for PrefillAttention<'_> {
    fn name(&self) -> &'static str {
        "wattbench-prefill-attention"
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
        candle_core::bail!("fused prompt attention runs on CUDA only; this is a bug")
    }

    fn cuda_fwd(
        &self,
        qs: &CudaStorage,
        ql: &Layout,
        ks: &CudaStorage,
        kl: &Layout,
        vs: &CudaStorage,
        vl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, nh, t, hd) = ql.shape().dims4()?;
        let (kb, nkv, cap, khd) = kl.shape().dims4()?;
        let fits = kb == b
            && khd == hd
            && nkv > 0
            && nh.is_multiple_of(nkv)
            && vl.shape() == kl.shape()
            && self.offset + t <= cap
            && ql.is_contiguous()
            && kl.is_contiguous()
            && vl.is_contiguous()
            && matches!(hd, 64 | 128);
        if !fits {
            candle_core::bail!(
                "prompt attention: q {:?} and caches {:?} at column {} do not fit",
                ql.shape(),
                kl.shape(),
                self.offset
            );
        }
        let dev = qs.device.clone();
        let func = function(
            &dev,
            &format!("wattbench_attention_{hd}_{UNROLL}"),
            SOURCE,
            &[format!("-DHEAD_DIM={hd}"), format!("-DUNROLL={UNROLL}")],
            "prefill_attention",
        )?;
        let q = qs.as_cuda_slice::<bf16>()?.slice(ql.start_offset()..);
        let k = ks.as_cuda_slice::<bf16>()?.slice(kl.start_offset()..);
        let v = vs.as_cuda_slice::<bf16>()?.slice(vl.start_offset()..);
        // SAFETY: the kernel writes every element of `y` (each query of each head).
        let mut y = driver(unsafe { dev.cuda_stream().alloc::<bf16>(b * t * nh * hd) })?;
        let ints = [t as i32, nh as i32, nkv as i32];
        let (k_batch, k_head) = ((nkv * cap * hd) as i64, (cap * hd) as i64);
        let offset = self.offset as i32;
        let cfg = LaunchConfig {
            grid_dim: (t.div_ceil(PREFILL_QUERIES) as u32, nh as u32, b as u32),
            block_dim: (PREFILL_QUERIES as u32 / 16 * 32, 1, 1),
            shared_mem_bytes: 0,
        };
        with_slice::<u32, _>(self.start, |start, _| {
            let stream = dev.cuda_stream();
            let mut l = stream.launch_builder(&func);
            l.arg(&q).arg(&k).arg(&v).arg(&mut y).arg(start);
            for i in &ints {
                l.arg(i);
            }
            l.arg(&k_batch).arg(&k_head).arg(&offset).arg(&self.scale);
            // SAFETY: the arguments match the kernel's signature; shapes were checked above, so
            // every key read lies below column offset + t of the caches and every write in `y`.
            driver(unsafe { l.launch(cfg) }).map(|_| ())
        })?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((b, t, nh * hd)),
        ))
    }
}

/// Causal attention of a prompt's queries `q [B, nh, T, hd]` (at cache columns `offset ..
/// offset + T`) over the whole caches `k`, `v` `[B, nkv, capacity, hd]` (contiguous, already
/// holding the prompt's keys and values): sequence `b` sees keys from `start[b]` (u32 `[B]` on
/// the device, its left padding) up to each query's own column; a padding query sees only itself.
/// Returns `[B, T, nh * hd]`.
pub fn prefill_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    start: &Tensor,
    offset: usize,
    scale: f32,
) -> Result<Tensor> {
    if start.dims() != [q.dim(0)?] || start.dtype() != candle_core::DType::U32 {
        candle_core::bail!("prompt attention: start must be u32 [batch], got {start:?}");
    }
    q.apply_op3_no_bwd(
        k,
        v,
        &PrefillAttention {
            start,
            offset,
            scale,
        },
    )
}
