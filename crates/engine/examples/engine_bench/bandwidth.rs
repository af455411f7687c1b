//! `--mode bandwidth`: how fast this GPU reads its memory, the ceiling of every memory-bound
//! kernel of a decode step. A kernel reads buffers of the sizes of the 7B shape's weight
//! matrices (and larger) with 16-byte loads, several in flight per thread, and folds them so the
//! loads are kept; the best of several launch shapes, median of `--reps` timed runs (CUDA events),
//! each buffer read once per run. Device-to-device copies (read + write) are timed alongside.
//! Each read is timed alone, its launch, start and drain included; `--mode chain` reads the same
//! sizes one after another, as a decode step does.

use crate::arg;
use cudarc::driver::{sys, LaunchConfig, PushKernelArg};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The read kernel: reads `n` 16-byte words and folds them, so that the loads are kept.
pub(crate) const READ_FOLD: &str = r#"
extern "C" __global__ void read_fold(const uint4* __restrict__ p, long long n,
                                     unsigned int* __restrict__ out) {
    unsigned int acc = 0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        const uint4 a = p[i], b = p[i + stride], c = p[i + 2 * stride], d = p[i + 3 * stride];
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w;
        acc ^= c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) { const uint4 a = p[i]; acc ^= a.x ^ a.y ^ a.z ^ a.w; }
    if (acc == 0x9e3779b9u) out[0] = acc;
}
"#;

pub fn run(args: &[String]) -> Res<()> {
    let reps: usize = arg(args, "--reps", "20").parse()?;
    let ctx = cudarc::driver::CudaContext::new(0)?;
    let stream = ctx.default_stream();
    let ptx = cudarc::nvrtc::compile_ptx(READ_FOLD)?;
    let func = ctx.load_module(ptx)?.load_function("read_fold")?;
    let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let mut out = stream.alloc_zeros::<u32>(1)?;
    let sizes_mb: Vec<usize> = arg(args, "--sizes-mb", "34,90,101,180,262,1024,4096")
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let timed = |f: &mut dyn FnMut() -> Res<()>| crate::median_ms(&stream, reps, f);
    for mb in sizes_mb {
        let bytes = mb << 20;
        // Two buffers read in turn, so the second read of one is not served by the L2 cache.
        let bufs = [
            stream.alloc_zeros::<u8>(bytes)?,
            stream.alloc_zeros::<u8>(bytes)?,
        ];
        let n = (bytes / 16) as i64;
        let mut best: Option<(f64, u32, u32)> = None;
        for blocks_per_sm in [2u32, 4, 8, 16] {
            for threads in [256u32, 512, 1024] {
                if blocks_per_sm * threads > 2048 {
                    continue;
                }
                let cfg = LaunchConfig {
                    grid_dim: (sms as u32 * blocks_per_sm, 1, 1),
                    block_dim: (threads, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut turn = 0;
                let ms = timed(&mut || {
                    let mut b = stream.launch_builder(&func);
                    b.arg(&bufs[turn % 2]).arg(&n).arg(&mut out);
                    turn += 1;
                    // SAFETY: the kernel reads n 16-byte words of the buffer and may write one u32.
                    unsafe { b.launch(cfg) }?;
                    Ok(())
                })?;
                if best.is_none_or(|(b, _, _)| ms < b) {
                    best = Some((ms, blocks_per_sm, threads));
                }
            }
        }
        let (src, mut dst) = (&bufs[0], stream.alloc_zeros::<u8>(bytes)?);
        let copy_ms = timed(&mut || {
            stream.memcpy_dtod(src, &mut dst)?;
            Ok(())
        })?;
        let (ms, bps, threads) = best.expect("at least one launch shape");
        println!(
            "{}",
            serde_json::json!({
                "bandwidth": {
                    "mb": mb, "read_ms": ms, "read_tb_s": bytes as f64 / ms / 1e9,
                    "blocks_per_sm": bps, "threads": threads,
                    "copy_ms": copy_ms, "copy_tb_s": 2.0 * bytes as f64 / copy_ms / 1e9,
                }
            })
        );
    }
    Ok(())
}
