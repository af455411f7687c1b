//! Fused decode attention on CUDA: one pass over each sequence's cached keys and values with an
//! online softmax, for the decode step (one query per sequence).
//!
//! Matrix products over the cache would run one matrix–vector product per (sequence, head), a
//! shape cuBLAS serves poorly, plus a mask addition and a softmax each reading and writing the
//! scores. Here one block handles one (sequence, query head); each warp walks a share of the keys,
//! each lane holding `head_dim / 32` dimensions, and the warps' partial softmax states are merged
//! at the end. Keys before a sequence's first real column (its left padding) are skipped. Scores
//! and sums are kept in f32; inputs and outputs are bf16. The kernel is compiled once per process
//! by NVRTC.

use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use half::bf16;
use std::sync::OnceLock;

const SOURCE: &str = r#"
typedef unsigned short bf16_t;
__device__ __forceinline__ float bf2f(bf16_t x) { return __uint_as_float(((unsigned int)x) << 16); }
__device__ __forceinline__ bf16_t f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}
#define WARPS 4
#define NEG_INF __int_as_float(0xff800000)
#define PER (HEAD_DIM / 32)
extern "C" __global__ void decode_attention(
    const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v,
    bf16_t* __restrict__ y, const unsigned int* __restrict__ start,
    int nh, int nkv, long long k_batch, long long k_head, int len, float scale)
{
    const int h = blockIdx.x, b = blockIdx.y;
    const int kvh = h / (nh / nkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const bf16_t* qp = q + ((long long)b * nh + h) * HEAD_DIM + lane * PER;
    float qv[PER];
    #pragma unroll
    for (int i = 0; i < PER; i++) qv[i] = bf2f(qp[i]) * scale;
    const long long base = (long long)b * k_batch + (long long)kvh * k_head + lane * PER;
    float m = NEG_INF, s = 0.f, acc[PER];
    #pragma unroll
    for (int i = 0; i < PER; i++) acc[i] = 0.f;
    for (int j = (int)start[b] + warp; j < len; j += WARPS) {
        const bf16_t* kp = k + base + (long long)j * HEAD_DIM;
        float dot = 0.f;
        #pragma unroll
        for (int i = 0; i < PER; i++) dot += qv[i] * bf2f(kp[i]);
        #pragma unroll
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        const float mn = fmaxf(m, dot);
        const float c = __expf(m - mn);
        const float p = __expf(dot - mn);
        s = s * c + p;
        const bf16_t* vp = v + base + (long long)j * HEAD_DIM;
        #pragma unroll
        for (int i = 0; i < PER; i++) acc[i] = acc[i] * c + p * bf2f(vp[i]);
        m = mn;
    }
    __shared__ float sm[WARPS], ss[WARPS], sacc[WARPS][HEAD_DIM];
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    #pragma unroll
    for (int i = 0; i < PER; i++) sacc[warp][lane * PER + i] = acc[i];
    __syncthreads();
    if (warp == 0) {
        float M = NEG_INF;
        for (int w = 0; w < WARPS; w++) M = fmaxf(M, sm[w]);
        float S = 0.f, out[PER];
        #pragma unroll
        for (int i = 0; i < PER; i++) out[i] = 0.f;
        for (int w = 0; w < WARPS; w++) {
            if (sm[w] == NEG_INF) continue;
            const float c = __expf(sm[w] - M);
            S += ss[w] * c;
            #pragma unroll
            for (int i = 0; i < PER; i++) out[i] += sacc[w][lane * PER + i] * c;
        }
        bf16_t* yp = y + ((long long)b * nh + h) * HEAD_DIM + lane * PER;
        #pragma unroll
        for (int i = 0; i < PER; i++) yp[i] = f2bf(out[i] / S);
    }
}
"#;

const WARPS: u32 = 4;

/// PTX of the kernel for one head dimension, compiled once.
fn ptx(head_dim: usize) -> Result<&'static str> {
    static P64: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    static P128: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    let cell = match head_dim {
        64 => &P64,
        128 => &P128,
        _ => candle_core::bail!(
            "fused decode attention supports head dimensions 64 and 128, not {head_dim}"
        ),
    };
    let r = cell.get_or_init(|| {
        let opts = cudarc::nvrtc::CompileOptions {
            options: vec![format!("-DHEAD_DIM={head_dim}")],
            arch: Some("compute_80"),
            ..Default::default()
        };
        cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts)
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    });
    r.as_deref()
        .map_err(|e| candle_core::Error::Msg(format!("compiling the decode attention kernel: {e}")))
}

/// Whether the fused kernel serves this case: CUDA, bf16, head dimension 64 or 128.
pub fn supported(q: &Tensor, head_dim: usize) -> bool {
    q.device().is_cuda() && q.dtype() == candle_core::DType::BF16 && matches!(head_dim, 64 | 128)
}

struct DecodeAttention {
    /// First visible key column of each sequence (its left padding).
    start: Vec<u32>,
    scale: f32,
}

impl CustomOp3 for DecodeAttention {
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
        let dev = qs.device.clone();
        let func = dev.get_or_load_custom_func(
            "decode_attention",
            &format!("wattbench_attention_{hd}"),
            ptx(hd)?,
        )?;
        let q = qs.as_cuda_slice::<bf16>()?.slice(ql.start_offset()..);
        let k = ks.as_cuda_slice::<bf16>()?.slice(kl.start_offset()..);
        let v = vs.as_cuda_slice::<bf16>()?.slice(vl.start_offset()..);
        let stream = dev.cuda_stream();
        let start = stream
            .clone_htod(&self.start)
            .map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        // SAFETY: every element of `y` is written by the kernel before it is read.
        let mut y = unsafe { stream.alloc::<bf16>(b * nh * hd) }
            .map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        let (nh_i, nkv_i, len_i) = (nh as i32, nkv as i32, len as i32);
        let (k_batch, k_head) = (ks_[0] as i64, ks_[1] as i64);
        let cfg = LaunchConfig {
            grid_dim: (nh as u32, b as u32, 1),
            block_dim: (32 * WARPS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = func.builder();
        builder
            .arg(&q)
            .arg(&k)
            .arg(&v)
            .arg(&mut y)
            .arg(&start)
            .arg(&nh_i)
            .arg(&nkv_i)
            .arg(&k_batch)
            .arg(&k_head)
            .arg(&len_i)
            .arg(&self.scale);
        // SAFETY: the arguments match the kernel's signature; the grid covers (head, sequence)
        // and every index stays inside the tensors checked above.
        unsafe { builder.launch(cfg) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((b, nh, 1, hd)),
        ))
    }
}

/// Attention of one query per sequence, `q [B, nh, 1, hd]`, over cache views `k`, `v`
/// `[B, nkv, len, hd]`; sequence `b` sees keys from `start[b]`. Returns `[B, nh, 1, hd]`.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    start: &[usize],
    scale: f32,
) -> Result<Tensor> {
    let op = DecodeAttention {
        start: start.iter().map(|&s| s as u32).collect(),
        scale,
    };
    q.apply_op3_no_bwd(k, v, &op)
}
