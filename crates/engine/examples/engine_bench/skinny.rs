//! `--mode skinny`: a product kernel for ≤ 64 rows that streams the weights into registers with
//! plain 16-byte loads (`skinny.cu`), checked against a product on the host and timed in a chain
//! of a decode step's products (7B shape, `--layers` layers, replayed from a CUDA graph) beside
//! plain reads of the same weights.

use crate::arg;
use cudarc::driver::{sys, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SOURCE: &str = include_str!("skinny.cu");

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

const WARPS: u32 = 4;
const FEATURES: usize = WARPS as usize * 32;

struct Kernel {
    func: CudaFunction,
    ws: CudaSlice<f32>,
    tiles: CudaSlice<u32>,
}

impl Kernel {
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        s: &Arc<CudaStream>,
        x: &CudaSlice<u16>,
        w: &cudarc::driver::CudaView<'_, u16>,
        y: &mut CudaSlice<u16>,
        (m, n, k): (usize, usize, usize),
        kr: usize,
    ) -> Res<()> {
        if n % FEATURES != 0 || k % 32 != 0 || kr % 32 != 0 || m > 64 {
            return Err(format!("skinny: {m}x{k} by {k}x{n} (kr {kr}) does not fit").into());
        }
        let kr = kr.min(k);
        let cfg = LaunchConfig {
            grid_dim: ((n / FEATURES) as u32, k.div_ceil(kr) as u32, 1),
            block_dim: (WARPS * 32, 1, 1),
            // x's columns, or the last block's turn-around of 64 rows by FEATURES (+ 1) floats.
            shared_mem_bytes: (kr * 128).max(64 * (FEATURES + 1) * 4) as u32,
        };
        let (m, n, k, kr) = (m as i32, n as i32, k as i32, kr as i32);
        let mut b = s.launch_builder(&self.func);
        b.arg(x)
            .arg(w)
            .arg(y)
            .arg(&mut self.ws)
            .arg(&mut self.tiles)
            .arg(&m)
            .arg(&n)
            .arg(&k)
            .arg(&kr);
        // SAFETY: x holds m * k, w n * k, y m * n elements; ws n * 64 floats and tiles n / 128
        // counters, both zero between products.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

fn bf(v: u16) -> f64 {
    f32::from_bits((v as u32) << 16) as f64
}

/// `w [n, k]` in the order the kernel reads it with `SK_TILED`: per 32 rows, per 32 columns,
/// [r 0..3][lane 0..31] 8-element words holding row 8r + lane / 4, columns 8 (lane % 4) ...
fn tile_order(w: &[u16], n: usize, k: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(w.len());
    for ft in 0..n / 32 {
        for kc in 0..k / 32 {
            for r in 0..4 {
                for lane in 0..32 {
                    let row = ft * 32 + 8 * r + lane / 4;
                    let col = kc * 32 + 8 * (lane % 4);
                    out.extend_from_slice(&w[row * k + col..row * k + col + 8]);
                }
            }
        }
    }
    out
}

pub fn run(args: &[String]) -> Res<()> {
    let reps: usize = arg(args, "--reps", "20").parse()?;
    let layers: usize = arg(args, "--layers", "32").parse()?;
    let ch: usize = arg(args, "--chunks", "4").parse()?;
    let krs: Vec<usize> = arg(args, "--kr", "256,512,1024")
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let tiled = arg(args, "--defines", "").contains("SK_TILED");
    let ctx = cudarc::driver::CudaContext::new(0)?;
    // SAFETY: every slice here is used on this one stream.
    unsafe { ctx.disable_event_tracking() };
    let s = ctx.new_stream()?;
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some("compute_90"),
        options: [format!("-DSK_CH={ch}"), format!("-DSK_WARPS={WARPS}")]
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
    let func = module.load_function("skinny_gemm")?;
    func.set_attribute(
        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        1024 * 128,
    )?;
    let helpers = ctx.load_module(cudarc::nvrtc::compile_ptx(FILL)?)?;
    let fill_fn = helpers.load_function("fill")?;
    let read_fn = helpers.load_function("read_fold")?;
    let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let n_max = 32000usize;
    let mut kern = Kernel {
        func,
        ws: s.alloc_zeros::<f32>(n_max * 64)?,
        tiles: s.alloc_zeros::<u32>(n_max / FEATURES)?,
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
    for &(m, n, k, kr) in &[
        (64usize, 512usize, 1536usize, 512usize),
        (37, 256, 1280, 512),
        (64, 384, 512, 512),
        (8, 128, 11008, 1024),
    ] {
        let x = random(m * k)?;
        let w = random(n * k)?;
        let mut y = s.alloc_zeros::<u16>(m * n)?;
        let (hx, hw) = (s.clone_dtoh(&x)?, s.clone_dtoh(&w)?);
        let w = if tiled {
            s.clone_htod(&tile_order(&hw, n, k))?
        } else {
            w
        };
        let mut worst = (0f64, 0f64);
        for _round in 0..2 {
            kern.launch(&s, &x, &w.as_view(), &mut y, (m, n, k), kr)?;
            let hy = s.clone_dtoh(&y)?;
            for r in 0..m {
                for f in 0..n {
                    let want: f64 = (0..k).map(|i| bf(hx[r * k + i]) * bf(hw[f * k + i])).sum();
                    let d = (bf(hy[r * n + f]) - want).abs();
                    worst = (worst.0.max(d), worst.1.max(want.abs()));
                }
            }
        }
        checks.push(serde_json::json!({"m": m, "n": n, "k": k, "kr": kr,
            "max_abs_diff": worst.0, "max_abs_value": worst.1}));
    }
    println!("{}", serde_json::json!({ "skinny_check": checks }));

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
    for &kr in &krs {
        let mut chain = |kern: &mut Kernel| -> Res<()> {
            for (i, w) in weights.iter().enumerate() {
                let j = i % 4;
                let (n, k) = shapes[j];
                let x = &xs[usize::from(j == 3)];
                kern.launch(&s, x, &w.as_view(), &mut ys[j], (64, n, k), kr)?;
            }
            Ok(())
        };
        let eager = timed(&mut || chain(&mut kern))?;
        s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let body = chain(&mut kern);
        let graph = s.end_capture(sys::CUgraphInstantiate_flags(0))?;
        body?;
        let graph = graph.ok_or("empty graph")?;
        let ms = timed(&mut || Ok(graph.launch()?))?;
        let mut per = serde_json::Map::new();
        for (j, name) in names.iter().enumerate() {
            let (n, k) = shapes[j];
            let x = &xs[usize::from(j == 3)];
            let one = timed(&mut || {
                for l in 0..layers {
                    kern.launch(
                        &s,
                        x,
                        &weights[l * 4 + j].as_view(),
                        &mut ys[j],
                        (64, n, k),
                        kr,
                    )?;
                }
                Ok(())
            })?;
            per.insert((*name).into(), serde_json::json!(one));
        }
        results.insert(
            format!("skinny_kr{kr}"),
            serde_json::json!({"graph_ms": ms, "tb_s": bytes as f64 / ms / 1e9,
                "eager_ms": eager, "per_shape_eager_ms": per}),
        );
    }
    println!(
        "{}",
        serde_json::json!({"skinny_chain": {"layers": layers, "gb": bytes as f64 / 1e9,
            "chunks_in_flight": ch, "results": results}})
    );
    Ok(())
}
