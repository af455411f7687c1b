//! `--mode chain`: what the kernel boundaries of a decode step cost a memory-bound chain.
//!
//! A decode step reads, layer after layer, one matrix (or one layer's cache) per kernel, each
//! kernel waiting for the last. Here the same bytes — the 7B shape's QKV, O, gate/up and down
//! weights and one layer's cache at batch 64, column 256, for `--layers` layers — are read with
//! no arithmetic, in six ways, each timed with CUDA events (median of `--reps` runs):
//! - `one_kernel`: one kernel reads them all, as one flat buffer (no boundaries at all);
//! - `kernels`: one kernel per matrix, queued one by one;
//! - `graph`: the same kernels replayed from a CUDA graph;
//! - `graph_alloc`: the same, with each kernel's output allocated and the last one freed in
//!   between (stream-ordered), as the engine's captured step has;
//! - `persistent`: one kernel whose blocks all stay resident and pass a grid-wide barrier
//!   between matrices, as if each matrix needed the last one's result;
//! - `persistent_prefetch`: the same, but every thread issues the loads of its first slice of
//!   the next matrix before it waits at the barrier (weights do not depend on the last result).

use crate::arg;
use cudarc::driver::{sys, CudaSlice, LaunchConfig, PushKernelArg};
use std::sync::Arc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The persistent kernel; the one-kernel-per-matrix reads use [`crate::bandwidth::READ_FOLD`].
const CHAIN: &str = r#"
__device__ __forceinline__ unsigned int fold(uint4 a) { return a.x ^ a.y ^ a.z ^ a.w; }

// Matrices m = 0..count-1 at [offs[m], offs[m+1]) (in 16-byte words). Block arrivals are counted
// in *counter, which starts this launch at `base`: matrix m may be read once all blocks have
// arrived for matrix m - 1.
extern "C" __global__ void chain(const uint4* __restrict__ p, const long long* __restrict__ offs,
                                 int count, unsigned int* counter, unsigned int base,
                                 int prefetch, unsigned int* __restrict__ out) {
    unsigned int acc = 0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (int m = 0; m < count; m++) {
        const uint4* q = p + offs[m];
        const long long n = offs[m + 1] - offs[m];
        long long i = t;
        uint4 a, b, c, d;
        const bool early = prefetch && i + 3 * stride < n;
        if (early) { a = q[i]; b = q[i + stride]; c = q[i + 2 * stride]; d = q[i + 3 * stride]; }
        if (m > 0) {
            if (threadIdx.x == 0) {
                const unsigned int target = base + (unsigned int)m * gridDim.x;
                unsigned int seen;
                do {
                    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter));
                } while ((int)(seen - target) < 0);
            }
            __syncthreads();
        }
        if (early) { acc ^= fold(a) ^ fold(b) ^ fold(c) ^ fold(d); i += 4 * stride; }
        for (; i + 3 * stride < n; i += 4 * stride) {
            acc ^= fold(q[i]) ^ fold(q[i + stride]) ^ fold(q[i + 2 * stride]) ^ fold(q[i + 3 * stride]);
        }
        for (; i < n; i += stride) acc ^= fold(q[i]);
        __syncthreads();
        if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(counter, 1u);
        }
    }
    if (acc == 0x9e3779b9u) out[0] = acc;
}
"#;

/// Bytes of the 7B shape's QKV, O, gate/up and down weight matrices (bf16), in a layer's order.
pub(crate) fn weight_sizes() -> [usize; 4] {
    let (h, f) = (4096usize, 11008usize);
    [3 * h * h * 2, h * h * 2, 2 * f * h * 2, f * h * 2]
}

/// Where each of `layers` layers' matrices of `sizes` bytes starts, in 16-byte words, one after
/// another; the last entry is the end.
pub(crate) fn offsets(sizes: &[usize], layers: usize) -> Vec<i64> {
    let mut offs = vec![0i64];
    for _ in 0..layers {
        for s in sizes {
            offs.push(offs.last().copied().unwrap_or(0) + (s / 16) as i64);
        }
    }
    offs
}

/// GPU 0's context (without cudarc's cross-stream events: everything runs on one stream), a new
/// stream, and `source` compiled for `arch` and loaded.
pub(crate) fn gpu0(
    source: &str,
    arch: &'static str,
) -> Res<(
    Arc<cudarc::driver::CudaContext>,
    Arc<cudarc::driver::CudaStream>,
    Arc<cudarc::driver::CudaModule>,
)> {
    let ctx = cudarc::driver::CudaContext::new(0)?;
    // SAFETY: the callers use their slices on this one stream only.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream()?;
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        ..Default::default()
    };
    let module = ctx.load_module(cudarc::nvrtc::compile_ptx_with_opts(source, opts)?)?;
    Ok((ctx, stream, module))
}

pub fn run(args: &[String]) -> Res<()> {
    let reps: usize = arg(args, "--reps", "20").parse()?;
    let layers: usize = arg(args, "--layers", "32").parse()?;
    let threads: u32 = arg(args, "--threads", "256").parse()?;
    // The 7B shape's matrices (bf16) and one layer's cache at batch 64, column 256.
    let h = 4096usize;
    let mut sizes = weight_sizes().to_vec();
    let cache: usize = arg(args, "--cache-bytes", &(2 * 64 * 256 * h * 2).to_string()).parse()?;
    if cache > 0 {
        sizes.insert(1, cache);
    }
    let offs = offsets(&sizes, layers);
    let words = *offs.last().unwrap_or(&0) as usize;
    let bytes = words * 16;
    let count = offs.len() - 1;

    let source = format!("{}\n{CHAIN}", crate::bandwidth::READ_FOLD);
    let (ctx, stream, module) = gpu0(&source, "compute_80")?;
    let read = module.load_function("read_fold")?;
    let chain = module.load_function("chain")?;
    let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let buf = stream.alloc_zeros::<u8>(bytes)?;
    let dev_offs = stream.clone_htod(&offs)?;
    let mut counter = stream.alloc_zeros::<u32>(1)?;
    let mut out = stream.alloc_zeros::<u32>(1)?;
    let resident = chain.occupancy_max_active_blocks_per_multiprocessor(threads, 0, None)?;
    let per_sm: u32 = arg(args, "--blocks-per-sm", &resident.to_string()).parse()?;
    if per_sm > resident {
        return Err(format!("--blocks-per-sm {per_sm}: at most {resident} blocks fit").into());
    }
    let cfg = LaunchConfig {
        grid_dim: (sms as u32 * per_sm, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let timed = |f: &mut dyn FnMut() -> Res<()>| crate::median_ms(&stream, reps, f);
    let launch_read = |from: i64, to: i64| -> Res<()> {
        let view = buf.slice((from as usize * 16)..(to as usize * 16));
        let n = to - from;
        let mut b = stream.launch_builder(&read);
        b.arg(&view).arg(&n).arg(&out);
        // SAFETY: the kernel reads n 16-byte words of the view and may write one u32.
        unsafe { b.launch(cfg) }?;
        Ok(())
    };
    let mut results = serde_json::Map::new();
    let mut put = |name: &str, ms: f64| {
        results.insert(
            name.into(),
            serde_json::json!({"ms": ms, "tb_s": bytes as f64 / ms / 1e9}),
        );
    };
    put("one_kernel", timed(&mut || launch_read(0, words as i64))?);
    let each = |alloc: bool| -> Res<()> {
        let mut last: Option<CudaSlice<u8>> = None;
        for m in 0..count {
            let y = if alloc {
                // SAFETY: never read; stands for a kernel's output.
                Some(unsafe { stream.alloc::<u8>(64 * h * 2) }?)
            } else {
                None
            };
            launch_read(offs[m], offs[m + 1])?;
            drop(std::mem::replace(&mut last, y));
        }
        Ok(())
    };
    put("kernels", timed(&mut || each(false))?);
    for (name, alloc) in [("graph", false), ("graph_alloc", true)] {
        stream.synchronize()?;
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let body = each(alloc);
        let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0))?;
        body?;
        let graph = graph.ok_or("empty graph")?;
        put(name, timed(&mut || Ok(graph.launch()?))?);
    }
    let grid = cfg.grid_dim.0;
    let mut launches = 0u32;
    for (name, prefetch) in [("persistent", 0i32), ("persistent_prefetch", 1)] {
        let ms = timed(&mut || {
            let base = launches.wrapping_mul(count as u32 * grid);
            launches += 1;
            let c = count as i32;
            let mut b = stream.launch_builder(&chain);
            b.arg(&buf)
                .arg(&dev_offs)
                .arg(&c)
                .arg(&mut counter)
                .arg(&base)
                .arg(&prefetch)
                .arg(&mut out);
            // SAFETY: all blocks are resident (the grid is at most the occupancy), so the
            // barrier cannot wait for a block that never runs; reads stay inside the buffer.
            unsafe { b.launch_cooperative(cfg) }?;
            Ok(())
        })?;
        put(name, ms);
    }
    println!(
        "{}",
        serde_json::json!({
            "chain": {
                "layers": layers, "matrices": count, "gb": bytes as f64 / 1e9,
                "sizes_bytes": sizes, "blocks_per_sm": per_sm, "threads": threads,
                "results": results,
            }
        })
    );
    Ok(())
}
