//! `--mode wgmma`: a product kernel for ≤ 64 rows that streams the weights (row-major, as
//! stored) into registers with plain 16-byte loads and multiplies with `wgmma`, A from registers
//! (`wgmma.cu`), checked against a product on the host and timed in a chain of a decode step's
//! products (7B shape, `--layers` layers, replayed from a CUDA graph) beside plain reads of the
//! same weights.

use crate::arg;
use cudarc::driver::{sys, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SOURCE: &str = include_str!("wgmma.cu");

const FILL: &str = r#"
extern "C" __global__ void fill(unsigned short* p, long long n, unsigned int seed) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        unsigned int h = (unsigned int)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
        // uniform in about [-0.03, 0.03): a bf16 with exponent 2^-6 or 2^-7
        const unsigned int sign = (h & 1u) << 15, exp = 120u + ((h >> 1) & 1u);
        p[i] = (unsigned short)(sign | (exp << 7) | ((h >> 2) & 0x7fu));
    }
}
extern "C" __global__ void read_fold(const uint4* __restrict__ p, long long n,
                                     unsigned int* __restrict__ out) {
    unsigned int acc = 0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        const uint4 a = p[i], b = p[i + stride], c = p[i + 2 * stride], d = p[i + 3 * stride];
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) { const uint4 a = p[i]; acc ^= a.x ^ a.y ^ a.z ^ a.w; }
    if (acc == 0x9e3779b9u) out[0] = acc;
}
"#;

/// Output features per block: 64 per warpgroup.
fn rows(wgs: usize) -> usize {
    64 * wgs
}
const SPLITS: [usize; 6] = [1, 2, 3, 4, 6, 8];

struct Kernel {
    funcs: Vec<CudaFunction>,
    smem: u32,
    wgs: usize,
}

impl Kernel {
    fn launch(
        &self,
        s: &Arc<CudaStream>,
        x: &CudaSlice<u16>,
        w: &cudarc::driver::CudaView<'_, u16>,
        y: &mut CudaSlice<u16>,
        (m, n, k): (usize, usize, usize),
        split: usize,
    ) -> Res<()> {
        let Some(i) = SPLITS.iter().position(|&v| v == split) else {
            return Err(format!("wgmma: no kernel for a split of {split}").into());
        };
        let rows = rows(self.wgs);
        if n % rows != 0 || k % 64 != 0 || m > 64 || k / 64 < split {
            return Err(format!("wgmma: {m}x{k} by {k}x{n} (split {split}) does not fit").into());
        }
        let cfg = LaunchConfig {
            grid_dim: ((n / rows) as u32, split as u32, 1),
            block_dim: (128 * self.wgs as u32, 1, 1),
            shared_mem_bytes: self.smem,
        };
        let (m, n, k) = (m as i32, n as i32, k as i32);
        let mut b = s.launch_builder(&self.funcs[i]);
        b.arg(x).arg(w).arg(y).arg(&m).arg(&n).arg(&k);
        // SAFETY: x holds m * k, w n * k, y m * n elements.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

fn bf(v: u16) -> f64 {
    f32::from_bits((v as u32) << 16) as f64
}

pub fn run(args: &[String]) -> Res<()> {
    let reps: usize = arg(args, "--reps", "20").parse()?;
    let layers: usize = arg(args, "--layers", "32").parse()?;
    let ch: usize = arg(args, "--chunks", "8").parse()?;
    let xs_stages: usize = arg(args, "--stages", "4").parse()?;
    let wgs: usize = arg(args, "--warpgroups", "2").parse()?;
    // Splits of K for QKV, O, gate/up and down.
    let splits: Vec<usize> = arg(args, "--splits", "1,4,1,4")
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let ctx = cudarc::driver::CudaContext::new(0)?;
    // SAFETY: every slice here is used on this one stream.
    unsafe { ctx.disable_event_tracking() };
    let s = ctx.new_stream()?;
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some("compute_90a"),
        options: [
            format!("-DWCH={ch}"),
            format!("-DXS={xs_stages}"),
            format!("-DWGS={wgs}"),
        ]
        .into_iter()
        .chain(
            arg(args, "--defines", "")
                .split_whitespace()
                .map(String::from),
        )
        .collect(),
        ..Default::default()
    };
    let module = ctx.load_module(cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts)?)?;
    let smem = (xs_stages * 8192).max(64 * (rows(wgs) + 4) * 4) + 1024;
    let mut funcs = Vec::new();
    for split in SPLITS {
        let f = module.load_function(&format!("wgmma_gemm_{split}"))?;
        f.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )?;
        funcs.push(f);
    }
    let helpers = ctx.load_module(cudarc::nvrtc::compile_ptx(FILL)?)?;
    let fill_fn = helpers.load_function("fill")?;
    let read_fn = helpers.load_function("read_fold")?;
    let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let kern = Kernel {
        funcs,
        smem: smem as u32,
        wgs,
    };
    let mut seed = 1u32;
    let mut random = |len: usize| -> Res<CudaSlice<u16>> {
        let mut t = s.alloc_zeros::<u16>(len)?;
        let n = len as i64;
        seed = seed.wrapping_mul(747796405).wrapping_add(2891336453);
        let mut b = s.launch_builder(&fill_fn);
        b.arg(&mut t).arg(&n).arg(&seed);
        // SAFETY: the kernel writes the n elements of t.
        unsafe { b.launch(LaunchConfig::for_num_elems(1 << 20)) }?;
        Ok(t)
    };

    // Checks against the host.
    let mut checks = Vec::new();
    for &(m, n, k, split) in &[
        (64usize, 256usize, 1024usize, 1usize),
        (64, 256, 1024, 4),
        (37, 128, 11008, 4),
        (8, 384, 512, 2),
        (64, 128, 4096, 8),
        (64, 128, 1920, 3),
    ] {
        let x = random(m * k)?;
        let w = random(n * k)?;
        let mut y = s.alloc_zeros::<u16>(m * n)?;
        let (hx, hw) = (s.clone_dtoh(&x)?, s.clone_dtoh(&w)?);
        let mut worst = (0f64, 0f64);
        for _round in 0..2 {
            kern.launch(&s, &x, &w.as_view(), &mut y, (m, n, k), split)?;
            let hy = s.clone_dtoh(&y)?;
            for r in 0..m {
                for f in 0..n {
                    let want: f64 = (0..k).map(|i| bf(hx[r * k + i]) * bf(hw[f * k + i])).sum();
                    let d = (bf(hy[r * n + f]) - want).abs();
                    worst = (worst.0.max(d), worst.1.max(want.abs()));
                }
            }
        }
        checks.push(serde_json::json!({"m": m, "n": n, "k": k, "split": split,
            "max_abs_diff": worst.0, "max_abs_value": worst.1}));
    }
    println!("{}", serde_json::json!({ "wgmma_check": checks }));

    // The chain: QKV, O, gate/up, down per layer.
    let (h, f) = (4096usize, 11008usize);
    let shapes = [(3 * h, h), (h, h), (2 * f, h), (h, f)];
    let names = ["qkv", "o", "gate_up", "down"];
    let mut weights = Vec::new();
    for _ in 0..layers {
        for &(n, k) in &shapes {
            weights.push(random(n * k)?);
        }
    }
    let xs = [random(64 * h)?, random(64 * f)?];
    let mut ys: Vec<CudaSlice<u16>> = shapes
        .iter()
        .map(|&(n, _)| s.alloc_zeros::<u16>(64 * n))
        .collect::<Result<_, _>>()?;
    let bytes: usize = weights.iter().map(|w| w.len() * 2).sum();
    s.synchronize()?;
    let timed = |f: &mut dyn FnMut() -> Res<()>| -> Res<f64> {
        f()?;
        let mut ms = Vec::with_capacity(reps);
        for _ in 0..reps {
            let a = s.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
            f()?;
            let b = s.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
            ms.push(a.elapsed_ms(&b)? as f64);
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    };
    let mut out = s.alloc_zeros::<u32>(1)?;
    let read_cfg = LaunchConfig {
        grid_dim: (sms as u32 * 8, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut results = serde_json::Map::new();
    // Plain reads of the same weights, one kernel per matrix, from a graph.
    {
        s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let body = (|| -> Res<()> {
            for w in &weights {
                let n = (w.len() / 8) as i64;
                let mut b = s.launch_builder(&read_fn);
                b.arg(w).arg(&n).arg(&mut out);
                // SAFETY: reads the n 16-byte words of w, may write one u32.
                unsafe { b.launch(read_cfg) }?;
            }
            Ok(())
        })();
        let graph = s.end_capture(sys::CUgraphInstantiate_flags(0))?;
        body?;
        let graph = graph.ok_or("empty graph")?;
        let ms = timed(&mut || Ok(graph.launch()?))?;
        results.insert(
            "plain_reads_graph".into(),
            serde_json::json!({"ms": ms, "tb_s": bytes as f64 / ms / 1e9}),
        );
    }
    let chain = |kern: &Kernel, ys: &mut [CudaSlice<u16>]| -> Res<()> {
        for (i, w) in weights.iter().enumerate() {
            let j = i % 4;
            let (n, k) = shapes[j];
            let x = &xs[usize::from(j == 3)];
            kern.launch(&s, x, &w.as_view(), &mut ys[j], (64, n, k), splits[j])?;
        }
        Ok(())
    };
    let eager = timed(&mut || chain(&kern, &mut ys))?;
    s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
    let body = chain(&kern, &mut ys);
    let graph = s.end_capture(sys::CUgraphInstantiate_flags(0))?;
    body?;
    let graph = graph.ok_or("empty graph")?;
    let ms = timed(&mut || Ok(graph.launch()?))?;
    results.insert(
        "wgmma_graph".into(),
        serde_json::json!({"ms": ms, "tb_s": bytes as f64 / ms / 1e9, "eager_ms": eager,
            "splits": splits}),
    );
    // Each kind's 32 products back to back, at every split.
    for (j, name) in names.iter().enumerate() {
        let (n, k) = shapes[j];
        let x = &xs[usize::from(j == 3)];
        let mut per = serde_json::Map::new();
        for split in SPLITS {
            let one = timed(&mut || {
                for l in 0..layers {
                    kern.launch(
                        &s,
                        x,
                        &weights[l * 4 + j].as_view(),
                        &mut ys[j],
                        (64, n, k),
                        split,
                    )?;
                }
                Ok(())
            })?;
            per.insert(format!("split_{split}"), serde_json::json!(one));
        }
        results.insert(format!("{name}_eager_ms"), serde_json::Value::Object(per));
    }
    println!(
        "{}",
        serde_json::json!({"wgmma_chain": {"layers": layers, "gb": bytes as f64 / 1e9,
            "chunks_in_flight": ch, "x_stages": xs_stages, "results": results}})
    );
    Ok(())
}
