//! `--mode power`: what the parts of a decode step draw from the card, and so what a step's bytes
//! cost in energy however fast they are read.
//!
//! Each part is captured in a CUDA graph and replayed back to back for `--seconds` (6) seconds,
//! with the energy counted by the sensors (`--sensor`, default `nvml`) over that window as
//! `--mode throughput` counts a batch. Per part: time a replay, average power, energy a replay
//! and a gigabyte read, mean SM clock and highest temperature. The parts, in this order, all of
//! them `--rounds` (2) times:
//! - `idle`: nothing queued;
//! - `copies`: the 7B shape's layer matrices, as many layers as the model has, filled with random
//!   bits and read by TMA bulk copies of 16 KB into rings of shared memory, one thread a block
//!   (`--mode inflight`'s `bulk_s8_k16`, the fastest read);
//! - `loads`: the same bytes by plain 16-byte loads, 4 a thread, 8 blocks an SM (every warp
//!   issuing; `ldg_u4_b8`);
//! - `products_b<R>` for R in `--rows` (1,64,256): the 128 products of a decode step of the
//!   model, R rows each — the same weights with 1/64, 1 and 4 times the arithmetic of a batch of
//!   64 — as the engine runs them (cuBLASLt with a timed algorithm);
//! - `products_b64_cublas`: the batch-64 products through candle's cuBLAS call;
//! - `products_b64_zeros`: the batch-64 products of rows of zeros (what the operands' bits cost);
//! - `attention_b64`: the layers' decode attention at batch 64 over `--at` (256) cached columns;
//! - `prefill_b64`: the peer workload's prompts at batch 64 (64 random prompts of 128 tokens) and
//!   their first tokens, nothing more;
//! - `batch_b64`: a whole batch of the peer workload (those prompts, 256 new tokens each,
//!   temperature 0.8, top-p 0.95), once a round, its prompt and decode steps counted apart.
//!
//! `--parts A,B` measures only the parts named (all by default).
//!
//! Activations and caches hold random values (N(0, 1)), the copied weights random bits.
//!
//! `floor`: what a batch of the peer workload would cost if each decode step read its bytes (the
//! weights with the output head, and the cache at its mean length, 128 + 256 / 2 columns) as the
//! copies read theirs, at the copies' energy a gigabyte, and multiplied its 64 rows at the energy
//! the products add over one row (`products_b64` less `products_b1`), with no other work — the
//! prompts at `prefill_b64`'s energy. Every term is a mean over the rounds of this run.

use crate::profile::{capture, kinds};
use crate::{arg, load};
use candle_core::Tensor;
use cudarc::driver::{sys, CudaGraph, LaunchConfig, PushKernelArg};
use std::time::{Duration, Instant};
use wattbench_core::summarize;
use wattbench_engine::model::Linear;
use wattbench_meter::{EnergySensor, Sampler, SensorSet};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const FILL: &str = r#"
// Random bits (SplitMix64 of the word's index), so that reading them toggles the bus as weights do.
extern "C" __global__ void fill(unsigned long long* __restrict__ p, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        unsigned long long z = (unsigned long long)i * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        p[i] = z ^ (z >> 31);
    }
}
"#;

/// One part: a replay queues one graph (or runs the prompts; for `idle`, nothing), `gb` read per
/// replay (0 where not counted).
struct Part<'a> {
    name: String,
    gb: f64,
    /// Whether a replay is work (time and energy a replay are reported), not a wait.
    work: bool,
    replay: Box<dyn Fn() -> Res<()> + 'a>,
    sync: Box<dyn Fn() -> Res<()> + 'a>,
}

pub fn run(args: &[String]) -> Res<()> {
    let seconds: f64 = arg(args, "--seconds", "6").parse()?;
    let rounds: usize = arg(args, "--rounds", "2").parse()?;
    let at: usize = arg(args, "--at", "256").parse()?;
    let rows = crate::numbers(args, "--rows", "1,64,256")?;
    // Checked before anything is loaded.
    let only = arg(args, "--parts", "");
    let mut names: Vec<String> = ["idle", "copies", "loads"].map(String::from).into();
    names.extend(rows.iter().map(|r| format!("products_b{r}")));
    names.extend(
        [
            "products_b64_cublas",
            "products_b64_zeros",
            "attention_b64",
            "prefill_b64",
            "batch_b64",
        ]
        .map(String::from),
    );
    if let Some(p) = only
        .split(',')
        .find(|p| !p.is_empty() && !names.iter().any(|n| n == p))
    {
        return Err(format!("--parts: no part named {p} (parts: {})", names.join(", ")).into());
    }
    let chosen = |name: &str| only.is_empty() || only.split(',').any(|p| p == name);
    let (name, dev, _, loaded) = load(args, "synthetic:llama-7b", "cuda", "auto")?;
    let m = &loaded.model;
    let candle_core::Device::Cuda(cd) = &dev else {
        return Err("--mode power needs --device cuda".into());
    };
    // The copies run on GPU 0 (`crate::chain::gpu0`), so the model must be there too.
    if !matches!(
        dev.location(),
        candle_core::DeviceLocation::Cuda { gpu_id: 0 }
    ) {
        return Err("--mode power runs on GPU 0: use --device cuda (or cuda:0)".into());
    }
    let sensors = crate::sensors(args, &dev, 1)?;
    let devices = sensors.devices().to_vec();

    // The weights' bytes for the copies, in a buffer of their own.
    let source = format!("{FILL}{}", crate::inflight::KERNELS);
    let (ctx, stream, module) = crate::chain::gpu0(&source, "compute_90")?;
    let offs = crate::chain::offsets(&crate::chain::weight_sizes(), m.layers.len());
    let words = *offs.last().unwrap_or(&0) as usize;
    let buf = stream.alloc_zeros::<u8>(words * 16)?;
    let out = stream.alloc_zeros::<u32>(1)?;
    let fill = module.load_function("fill")?;
    let n64 = (words * 2) as i64;
    let mut b = stream.launch_builder(&fill);
    b.arg(&buf).arg(&n64);
    let cfg = LaunchConfig {
        grid_dim: (132 * 8, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the kernel writes the buffer's n64 8-byte words, grid-stride.
    unsafe { b.launch(cfg) }?;
    let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let ways = crate::inflight::ways(&module, sms as u32)?;
    let way = |name: &str| ways.iter().find(|w| w.name == name).ok_or("no such way");
    let copies = crate::inflight::capture(&stream, way("bulk_s8_k16")?, &buf, &offs, &out)?;
    let loads = crate::inflight::capture(&stream, way("ldg_u4_b8")?, &buf, &offs, &out)?;
    let weights_gb = (words * 16) as f64 / 1e9;

    // The model's products and attention.
    let ws: Vec<Vec<&Tensor>> = kinds()
        .iter()
        .map(|(_, pick, _)| m.layers.iter().filter_map(pick).collect())
        .collect();
    if ws.iter().any(|w| w.len() != m.layers.len()) {
        return Err(format!("{name}: --mode power needs dense bf16 or f16 weights").into());
    }
    let step_gb: f64 = ws
        .iter()
        .flatten()
        .map(|w| (w.elem_count() * w.dtype().size_in_bytes()) as f64)
        .sum::<f64>()
        / 1e9;
    let (hidden, f) = (m.cfg.hidden_size, m.cfg.intermediate_size);
    let rnd = |shape: &[usize]| -> candle_core::Result<Tensor> {
        Tensor::randn(0f32, 1.0, shape, &dev)?.to_dtype(m.dtype)
    };
    // A graph of the products at `r` rows, with the operands it reads (kept as long as it is).
    let products = |r: usize, zeros: bool| -> Res<(CudaGraph, [Tensor; 2])> {
        let (h, a) = if zeros {
            (
                Tensor::zeros((r, 1, hidden), m.dtype, &dev)?,
                Tensor::zeros((r, 1, f), m.dtype, &dev)?,
            )
        } else {
            (rnd(&[r, 1, hidden])?, rnd(&[r, 1, f])?)
        };
        let graph = capture(cd, &|| {
            // (Every layer holds every kind: checked above.)
            for layer in &m.layers {
                for (_, pick, wide) in kinds() {
                    if let Some(w) = pick(layer) {
                        Linear::dense(if wide { &a } else { &h }, w)?;
                    }
                }
            }
            Ok(())
        })?;
        Ok((graph, [h, a]))
    };
    // Each part's graph, its bytes a replay, and the tensors it reads.
    let mut graphs: Vec<(String, f64, CudaGraph, Vec<Tensor>)> = Vec::new();
    for &r in &rows {
        let (g, operands) = products(r, false)?;
        graphs.push((format!("products_b{r}"), step_gb, g, operands.into()));
    }
    let lt = wattbench_engine::cuda::gemm::enabled();
    wattbench_engine::cuda::gemm::set_enabled(false);
    let cublas = products(64, false);
    wattbench_engine::cuda::gemm::set_enabled(lt);
    let (g, operands) = cublas?;
    graphs.push(("products_b64_cublas".into(), step_gb, g, operands.into()));
    let (g, operands) = products(64, true)?;
    graphs.push(("products_b64_zeros".into(), step_gb, g, operands.into()));
    let (nh, nkv, hd) = (
        m.cfg.num_attention_heads,
        m.cfg.kv_heads(),
        m.cfg.head_dim(),
    );
    let q = rnd(&[64, nh, 1, hd])?;
    let (kc, vc) = (rnd(&[64, nkv, at + 1, hd])?, rnd(&[64, nkv, at + 1, hd])?);
    let starts = Tensor::zeros(64, candle_core::DType::U32, &dev)?;
    let attention = capture(cd, &|| {
        for _ in &m.layers {
            wattbench_engine::cuda::attention::decode_attention(&q, &kc, &vc, &starts, None, 1.0)?;
        }
        Ok(())
    })?;
    let cache_gb = (2 * kc.elem_count() * m.dtype.size_in_bytes() * m.layers.len()) as f64 / 1e9;
    graphs.push((
        "attention_b64".into(),
        cache_gb,
        attention,
        vec![q, kc, vc, starts],
    ));

    let prompts = crate::peer_requests(64, PROMPT, 1, m.cfg.vocab_size as u64);
    let model_sync = || -> Res<()> { Ok(dev.synchronize()?) };
    let copy_sync = || -> Res<()> { Ok(stream.synchronize()?) };
    let mut parts: Vec<Part> = vec![
        Part {
            name: "idle".into(),
            gb: 0.0,
            work: false,
            replay: Box::new(|| {
                std::thread::sleep(Duration::from_millis(10));
                Ok(())
            }),
            sync: Box::new(|| Ok(())),
        },
        Part {
            name: "copies".into(),
            gb: weights_gb,
            work: true,
            replay: Box::new(|| Ok(copies.launch()?)),
            sync: Box::new(copy_sync),
        },
        Part {
            name: "loads".into(),
            gb: weights_gb,
            work: true,
            replay: Box::new(|| Ok(loads.launch()?)),
            sync: Box::new(copy_sync),
        },
    ];
    for (name, gb, g, _) in &graphs {
        parts.push(Part {
            name: name.clone(),
            gb: *gb,
            work: true,
            replay: Box::new(move || Ok(g.launch()?)),
            sync: Box::new(model_sync),
        });
    }
    parts.push(Part {
        name: "prefill_b64".into(),
        gb: 0.0,
        work: true,
        replay: Box::new(|| {
            loaded.generate(&prompts, &peer_params(), None, &mut |_, _| {})?;
            Ok(())
        }),
        sync: Box::new(|| Ok(())),
    });
    stream.synchronize()?;
    dev.synchronize()?;

    parts.retain(|p| chosen(&p.name));
    let sampler = Sampler::start(sensors, Duration::from_millis(100), true, None)?;
    let mut results = Vec::new();
    for round in 0..rounds {
        for part in &parts {
            // One replay first, outside the window.
            (part.replay)()?;
            (part.sync)()?;
            let t0 = sampler.mark();
            let start = Instant::now();
            let mut replays = 0usize;
            while start.elapsed().as_secs_f64() < seconds {
                for _ in 0..8 {
                    (part.replay)()?;
                }
                replays += 8;
                (part.sync)()?;
            }
            let t1 = sampler.mark();
            let s = summarize(&devices, &sampler.snapshot(), t0, t1, None);
            let d = s.devices.first();
            let per = |x: Option<f64>| x.map(|x| x / replays as f64).filter(|_| part.work);
            let ms = 1e3 * (t1 - t0) / replays as f64;
            let line = serde_json::json!({
                "part": part.name,
                "round": round,
                "replays": replays,
                "seconds": t1 - t0,
                "ms_per_replay": part.work.then_some(ms),
                "gb_per_replay": part.gb,
                "tb_s": (part.gb > 0.0).then(|| part.gb / ms),
                "watts": s.avg_power_w,
                "j_per_replay": per(s.energy_j),
                "j_per_gb": s.energy_j.filter(|_| part.gb > 0.0).map(|e| e / (part.gb * replays as f64)),
                "counter_j": d.and_then(|d| d.counter_energy_j),
                "integrated_j": d.and_then(|d| d.integrated_power_j),
                "mean_sm_clock_mhz": d.and_then(|d| d.mean_sm_clock_mhz),
                "mean_sm_util_pct": d.and_then(|d| d.mean_sm_util_pct),
                "max_temperature_c": d.and_then(|d| d.max_temperature_c),
            });
            println!("{line}");
            results.push(line);
        }
        if chosen("batch_b64") {
            let line = batch(&loaded, &sampler, &devices, round)?;
            println!("{line}");
            results.push(line);
        }
    }
    sampler.stop();
    let head_gb = match &m.lm_head {
        Linear::Dense(w) => (w.elem_count() * w.dtype().size_in_bytes()) as f64 / 1e9,
        _ => 0.0,
    };
    let mean_columns = PROMPT + NEW as usize / 2;
    let cache_mean_gb = cache_gb / (at + 1) as f64 * mean_columns as f64;
    let floor = floor(&results, step_gb + head_gb + cache_mean_gb);
    println!(
        "{}",
        serde_json::json!({ "power": { "model": name, "seconds": seconds, "at": at, "parts": results, "floor": floor } })
    );
    Ok(())
}

/// The peer workload: prompts of this many tokens, this many new tokens each, batch 64.
const PROMPT: usize = 128;
const NEW: u32 = 256;

fn peer_params() -> wattbench_engine::GenerationParams {
    wattbench_engine::GenerationParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: 0,
        ignore_eos: true,
        eos_ids: vec![],
    }
}

/// The mean of `key` over the rounds of part `name`.
fn mean(results: &[serde_json::Value], name: &str, key: &str) -> Option<f64> {
    let xs: Vec<f64> = results
        .iter()
        .filter(|r| r["part"] == name)
        .filter_map(|r| r[key].as_f64())
        .collect();
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The floor of a batch of the peer workload (see the module's note), from the parts measured,
/// beside the batches measured; null where a part is missing.
fn floor(results: &[serde_json::Value], step_gb: f64) -> serde_json::Value {
    let per_gb = mean(results, "copies", "j_per_gb");
    let arithmetic = mean(results, "products_b64", "j_per_replay")
        .zip(mean(results, "products_b1", "j_per_replay"))
        .map(|(a, b)| a - b);
    let step = per_gb.zip(arithmetic).map(|(g, a)| step_gb * g + a);
    let prefill = mean(results, "prefill_b64", "j_per_replay");
    let tokens = 64.0 * NEW as f64;
    serde_json::json!({
        "step_gb": step_gb,
        "copies_j_per_gb": per_gb,
        "arithmetic_j_per_step": arithmetic,
        "decode_step_j": step,
        "decode_j_per_token": step.map(|s| s / 64.0),
        "prefill_j": prefill,
        "j_per_token": step.zip(prefill).map(|(s, p)| ((NEW - 1) as f64 * s + p) / tokens),
        "measured_j_per_token": mean(results, "batch_b64", "j_per_token"),
        "measured_decode_j_per_token": mean(results, "batch_b64", "decode_j_per_token"),
    })
}

/// One batch of the peer workload at 64, its prompt and its decode steps metered apart.
fn batch(
    loaded: &wattbench_engine::LoadedModel,
    sampler: &Sampler<SensorSet>,
    devices: &[wattbench_core::DeviceInfo],
    round: usize,
) -> Res<serde_json::Value> {
    let reqs = crate::peer_requests(64, PROMPT, NEW, loaded.model.cfg.vocab_size as u64);
    let params = peer_params();
    loaded.generate(&reqs, &params, None, &mut |_, _| {})?;
    let t0 = sampler.mark();
    let r = loaded.generate(&reqs, &params, None, &mut |_, _| {})?;
    let t1 = sampler.mark();
    let tokens: usize = r.outputs.iter().map(|o| o.tokens.len()).sum();
    let timeline = sampler.snapshot();
    let whole = summarize(devices, &timeline, t0, t1, None);
    let decode = summarize(devices, &timeline, t1 - r.decode_s, t1, None);
    let prefill = summarize(devices, &timeline, t0, t1 - r.decode_s, None);
    let steps = (tokens - 64) as f64;
    Ok(serde_json::json!({
        "part": "batch_b64",
        "round": round,
        "seconds": t1 - t0,
        "tok_per_s": tokens as f64 / (t1 - t0),
        "watts": whole.avg_power_w,
        "j_per_token": whole.energy_j.map(|e| e / tokens as f64),
        "prefill_s": r.prefill_s,
        "prefill_watts": prefill.avg_power_w,
        "decode_s": r.decode_s,
        "decode_ms_per_step": 1e3 * r.decode_s / (steps / 64.0),
        "decode_watts": decode.avg_power_w,
        "decode_j_per_token": decode.energy_j.map(|e| e / steps),
        "mean_sm_clock_mhz": whole.devices.first().and_then(|d| d.mean_sm_clock_mhz),
        "max_temperature_c": whole.devices.first().and_then(|d| d.max_temperature_c),
    }))
}
