//! `--mode inflight`: how many bytes a kernel must have on their way from memory for a decode
//! step's weight reads to run at the card's speed, and whether the way they travel matters.
//!
//! The 7B shape's QKV, O, gate/up and down weights of `--layers` layers (13 GB for 32) are read
//! one matrix per kernel, the kernels replayed from a CUDA graph as a decode step's products are
//! (median of `--reps` replays), in four ways:
//! - `ldg_u<U>_b<B>`: plain 16-byte loads, `U` in flight per thread, `B` blocks of 256 threads
//!   per SM;
//! - `ldgsts_s<S>`: each thread copies its 16-byte words of 16 KB chunks into a ring of `S`
//!   chunks in shared memory (`cp.async`), `S - 1` chunks ahead of the one it reads back;
//! - `bulk_s<S>_k<KB>`: one thread a block copies whole chunks of `KB` KB into a ring of `S` with
//!   the tensor memory accelerator (`cp.async.bulk`, completion on an mbarrier), `S - 1` ahead;
//! - `handoff_s<S>_k<KB>`: the same copies, one block an SM, handed between a producer thread and
//!   four consumer warps through full and empty barriers, as a product kernel hands its stages.
//!
//! Chunks are taken grid-stride (block b takes chunks b, b + blocks, ...), so that at any time the
//! blocks read one stretch of memory; a matrix's last partial chunk is not read.

use crate::arg;
use cudarc::driver::{sys, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use std::sync::Arc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) const KERNELS: &str = r#"
#define READ_U(U)                                                                            \
extern "C" __global__ void read_u##U(const uint4* __restrict__ p, long long n,               \
                                     unsigned int* __restrict__ out) {                       \
    unsigned int acc = 0;                                                                    \
    const long long stride = (long long)gridDim.x * blockDim.x;                              \
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;                          \
    for (; i + (U - 1) * stride < n; i += U * stride) {                                      \
        uint4 v[U];                                                                          \
        _Pragma("unroll") for (int u = 0; u < U; u++) v[u] = p[i + u * stride];              \
        _Pragma("unroll") for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w; \
    }                                                                                        \
    for (; i < n; i += stride) { const uint4 a = p[i]; acc ^= a.x ^ a.y ^ a.z ^ a.w; }       \
    if (acc == 0x9e3779b9u) out[0] = acc;                                                    \
}
READ_U(1) READ_U(2) READ_U(4) READ_U(8)

// 16 KB chunks: 256 threads x 4 words.
#define WORDS 4
__device__ __forceinline__ unsigned int smem(const void* p) {
    return (unsigned int)__cvta_generic_to_shared(p);
}

// This thread's words of one chunk, copied with cp.async (the caller commits the group).
__device__ __forceinline__ void copy_chunk(uint4* dst, const uint4* src) {
    #pragma unroll
    for (int w = 0; w < WORDS; w++) {
        const int o = w * blockDim.x + threadIdx.x;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem(dst + o)), "l"(src + o));
    }
}

#define LDGSTS(S)                                                                            \
extern "C" __global__ void ldgsts_s##S(const uint4* __restrict__ p, long long n,             \
                                       unsigned int* __restrict__ out) {                     \
    extern __shared__ uint4 ring[];                                                          \
    const long long chunk = (long long)WORDS * blockDim.x, chunks = n / chunk;               \
    unsigned int acc = 0;                                                                    \
    for (int s = 0; s < S - 1; s++) {                                                        \
        const long long c = blockIdx.x + (long long)s * gridDim.x;                           \
        if (c < chunks) copy_chunk(ring + s * chunk, p + c * chunk);                         \
        asm volatile("cp.async.commit_group;");                                              \
    }                                                                                        \
    int slot = 0;                                                                            \
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {                             \
        const long long cn = c + (long long)(S - 1) * gridDim.x;                             \
        const int sn = (slot + S - 1) % S;                                                   \
        if (cn < chunks) copy_chunk(ring + sn * chunk, p + cn * chunk);                      \
        asm volatile("cp.async.commit_group;");                                              \
        asm volatile("cp.async.wait_group %0;" :: "n"(S - 1));                               \
        _Pragma("unroll") for (int w = 0; w < WORDS; w++) {                                  \
            const uint4 a = ring[slot * chunk + w * blockDim.x + threadIdx.x];               \
            acc ^= a.x ^ a.y ^ a.z ^ a.w;                                                    \
        }                                                                                    \
        slot = (slot + 1) % S;                                                               \
    }                                                                                        \
    if (acc == 0x9e3779b9u) out[0] = acc;                                                    \
}
LDGSTS(2) LDGSTS(4) LDGSTS(6) LDGSTS(8) LDGSTS(12)

// One chunk of `bytes` copied by the tensor memory accelerator, counted on the mbarrier `bar`.
__device__ __forceinline__ void bulk(unsigned int dst, const void* src, unsigned int bar,
                                     unsigned int bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                 :: "r"(bar), "r"(bytes) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
                 "[%0], [%1], %2, [%3];"
                 :: "r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
// Waits until phase `phase` of the mbarrier `bar` completes.
__device__ __forceinline__ void wait_bar(unsigned int bar, unsigned int phase) {
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 " @!p bra W;\n}"
                 :: "r"(bar), "r"(phase) : "memory");
}
// One thread a block (the block is one warp, lane 0 works) copies chunks of `bytes`, grid-stride,
// S - 1 ahead of the one it waits for (whole chunks only).
extern "C" __global__ void bulk_ring(const uint4* __restrict__ p, long long n, int S, int bytes,
                                     unsigned int* __restrict__ out) {
    extern __shared__ __align__(128) unsigned char buf[];
    __shared__ __align__(8) unsigned long long bars[24];
    if (threadIdx.x != 0) return;
    const long long chunk = bytes / 16, chunks = n / chunk;
    for (int s = 0; s < S; s++)
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(smem(bars + s)));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    for (int s = 0; s < S - 1; s++) {
        const long long c = blockIdx.x + (long long)s * gridDim.x;
        if (c < chunks) bulk(smem(buf + s * bytes), p + c * chunk, smem(bars + s), bytes);
    }
    int slot = 0;
    unsigned int phases = 0, acc = 0;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long cn = c + (long long)(S - 1) * gridDim.x;
        const int sn = (slot + S - 1) % S;
        if (cn < chunks) bulk(smem(buf + sn * bytes), p + cn * chunk, smem(bars + sn), bytes);
        wait_bar(smem(bars + slot), (phases >> slot) & 1u);
        phases ^= 1u << slot;
        acc ^= *reinterpret_cast<const unsigned int*>(buf + slot * bytes);
        slot = (slot + 1) % S;
    }
    if (acc == 0x9e3779b9u) out[0] = acc;
}
// The same copies handed between a producer and consumers, as a product kernel does: thread 128
// (warp 4) copies each chunk once the four consumer warps (0-3) have let go of its stage; each
// consumer warp waits for the chunk, reads a word of it and lets it go.
extern "C" __global__ void bulk_handoff(const uint4* __restrict__ p, long long n, int S,
                                        int bytes, unsigned int* __restrict__ out) {
    extern __shared__ __align__(128) unsigned char buf[];
    __shared__ __align__(8) unsigned long long full[24], empty[24];
    const long long chunk = bytes / 16, chunks = n / chunk;
    const long long mine = chunks > blockIdx.x ? (chunks - blockIdx.x - 1) / gridDim.x + 1 : 0;
    if (threadIdx.x == 0) {
        for (int s = 0; s < S; s++) {
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(smem(full + s)));
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 4;" :: "r"(smem(empty + s)));
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x >= 128) {
        if (threadIdx.x == 128)
            for (long long t = 0; t < mine; t++) {
                const int slot = t % S;
                if (t >= S) wait_bar(smem(empty + slot), (unsigned int)((t / S - 1) & 1));
                bulk(smem(buf + slot * bytes), p + (blockIdx.x + t * gridDim.x) * chunk,
                     smem(full + slot), bytes);
            }
        return;
    }
    unsigned int acc = 0;
    for (long long t = 0; t < mine; t++) {
        const int slot = t % S;
        wait_bar(smem(full + slot), (unsigned int)((t / S) & 1));
        acc ^= *reinterpret_cast<const unsigned int*>(buf + slot * bytes + threadIdx.x * 4);
        __syncwarp();
        if (threadIdx.x % 32 == 0)
            asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(smem(empty + slot))
                         : "memory");
    }
    if (acc == 0x9e3779b9u) out[0] = acc;
}
"#;

/// One way of reading: its kernel, launch shape, arguments after `n`, and bytes in flight per SM.
pub(crate) struct Way {
    pub name: String,
    func: CudaFunction,
    grid: u32,
    block: u32,
    shared: u32,
    extra: Vec<i32>,
    pub in_flight: u32,
}

/// Every way of reading, on a GPU of `sms` SMs, from the module compiled from [`KERNELS`].
pub(crate) fn ways(module: &Arc<CudaModule>, sms: u32) -> Res<Vec<Way>> {
    let mut ways: Vec<Way> = Vec::new();
    for u in [1, 2, 4, 8] {
        for b in [1u32, 2, 4, 8] {
            ways.push(Way {
                name: format!("ldg_u{u}_b{b}"),
                func: module.load_function(&format!("read_u{u}"))?,
                grid: sms * b,
                block: 256,
                shared: 0,
                extra: Vec::new(),
                in_flight: 256 * 16 * u * b,
            });
        }
    }
    // A ring kernel with `stages` chunks of `kb` KB of shared memory: as many blocks an SM as
    // fit, or one (`one`: the hand-off, one block an SM as a product kernel has).
    let ring = |name: String, kernel: &str, stages: u32, kb: u32, one: bool| -> Res<Way> {
        let func = module.load_function(kernel)?;
        let shared = stages * kb * 1024;
        // The most any launch of the kernel asks for (the setting is the kernel's, not the
        // launch's).
        func.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            224 * 1024,
        )?;
        let per_sm = if one {
            1
        } else {
            (228 * 1024 / (shared + 1024)).clamp(1, 8)
        };
        let extra = if kernel.starts_with("ldgsts") {
            Vec::new()
        } else {
            vec![stages as i32, (kb * 1024) as i32]
        };
        Ok(Way {
            name,
            func,
            grid: sms * per_sm,
            block: if one {
                160
            } else if extra.is_empty() {
                256
            } else {
                32
            },
            shared,
            extra,
            in_flight: per_sm * (stages - 1) * kb * 1024,
        })
    };
    for s in [2u32, 4, 6, 8, 12] {
        ways.push(ring(
            format!("ldgsts_s{s}"),
            &format!("ldgsts_s{s}"),
            s,
            16,
            false,
        )?);
    }
    let bulk = [
        (2u32, 16u32),
        (4, 16),
        (8, 16),
        (13, 16),
        (10, 12),
        (16, 8),
        (16, 4),
        (6, 32),
    ];
    for (s, kb) in bulk {
        ways.push(ring(format!("bulk_s{s}_k{kb}"), "bulk_ring", s, kb, false)?);
    }
    for (s, kb) in [(8u32, 16u32), (10, 12), (13, 16), (16, 4)] {
        ways.push(ring(
            format!("handoff_s{s}_k{kb}"),
            "bulk_handoff",
            s,
            kb,
            true,
        )?);
    }
    Ok(ways)
}

/// One kernel per matrix of `buf` (matrices at `offs`, in 16-byte words), read the way `way`
/// reads, captured into a CUDA graph on `stream`.
pub(crate) fn capture(
    stream: &Arc<CudaStream>,
    way: &Way,
    buf: &CudaSlice<u8>,
    offs: &[i64],
    out: &CudaSlice<u32>,
) -> Res<CudaGraph> {
    let cfg = LaunchConfig {
        grid_dim: (way.grid, 1, 1),
        block_dim: (way.block, 1, 1),
        shared_mem_bytes: way.shared,
    };
    let each = || -> Res<()> {
        for m in 0..offs.len() - 1 {
            let view = buf.slice((offs[m] as usize * 16)..(offs[m + 1] as usize * 16));
            let n = offs[m + 1] - offs[m];
            let mut b = stream.launch_builder(&way.func);
            b.arg(&view).arg(&n);
            for e in &way.extra {
                b.arg(e);
            }
            b.arg(out);
            // SAFETY: the kernel reads n 16-byte words of the view (whole chunks for the
            // rings) and may write one u32; shared memory as set in `ways`.
            unsafe { b.launch(cfg) }?;
        }
        Ok(())
    };
    stream.synchronize()?;
    stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
    let body = each();
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0))?;
    body?;
    Ok(graph.ok_or("empty graph")?)
}

pub fn run(args: &[String]) -> Res<()> {
    let reps: usize = arg(args, "--reps", "10").parse()?;
    let layers: usize = arg(args, "--layers", "32").parse()?;
    let offs = crate::chain::offsets(&crate::chain::weight_sizes(), layers);
    let words = *offs.last().unwrap_or(&0) as usize;
    let bytes = words * 16;
    let (ctx, stream, module) = crate::chain::gpu0(KERNELS, "compute_90")?;
    let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let buf = stream.alloc_zeros::<u8>(bytes)?;
    let out = stream.alloc_zeros::<u32>(1)?;
    let ways = ways(&module, sms as u32)?;
    let mut results = serde_json::Map::new();
    for way in &ways {
        let graph = capture(&stream, way, &buf, &offs, &out)?;
        let ms = crate::median_ms(&stream, reps, &mut || Ok(graph.launch()?))?;
        let (name, in_flight) = (&way.name, way.in_flight);
        results.insert(
            name.clone(),
            serde_json::json!({"ms": ms, "tb_s": bytes as f64 / ms / 1e9,
                               "in_flight_per_sm": in_flight}),
        );
        println!(
            "{name} {ms:.3} ms {:.3} TB/s in flight/SM {in_flight}",
            bytes as f64 / ms / 1e9
        );
    }
    println!(
        "{}",
        serde_json::json!({"inflight": {"layers": layers, "gb": bytes as f64 / 1e9, "results": results}})
    );
    Ok(())
}
