//! Benchmarks of the embedded engine, in one binary (so one copy travels to a GPU machine).
//!
//! `--mode throughput` (default): offline throughput and energy on the peer workload: random
//! prompts of exactly `--prompt-len` tokens, exactly `--new` new tokens each (`ignore_eos`), one
//! batch per measurement after a warm-up with the same shapes, `--repeat` measurements a batch
//! size (one by default). Energy comes from the sensors (`--sensor`, default `nvml`), counted over
//! the timed batch only; with the mean SM clock and the highest temperature over it. One JSON line
//! per measurement.
//!
//! `--mode profile`: where a decode step's time goes (CUDA): the whole step, the host's share of
//! it, and the matrix products, attention and sampling timed alone.
//!
//! `--mode check`: the engine's CUDA kernels against candle's operations (attention, the fused
//! layer work, whole-model logits and greedy tokens, and the sampling distribution).
//!
//! `--mode graphs`: decode steps replayed from a CUDA graph against eager ones (same tokens, time).
//!
//! `--mode allreduce --gpus N`: the time of one decode step's all-reduce over N GPUs (NCCL).
//!
//! `--mode bandwidth`: how fast the GPU reads its memory (the ceiling of memory-bound kernels).
//!
//! `--mode chain`: what kernel boundaries cost a chain of memory-bound reads (a decode step's
//! bytes read one matrix per kernel, from a graph, or by one persistent kernel).
//!
//! `--mode inflight`: how many bytes a kernel must have on their way from memory to read a decode
//! step's weights at full speed, by plain loads, `cp.async` or the tensor memory accelerator.
//!
//! `--mode power`: what the parts of a decode step draw from the card: weights copied with no
//! arithmetic, the step's products at 1, 64 and 256 rows, its attention, and the card idle.
//!
//! `--mode greedy`: greedy tokens of a synthetic model for fixed prompts, to compare devices: run
//! it with `--device cpu` and `--device cuda` and diff the output (synthetic weights come from the
//! same seed on every device).
//!
//! `--gpus N` (with the `nccl` feature) splits the model over GPUs 0..N, tensor-parallel.
//!
//! cargo run --release --features cuda -p wattbench-engine --example engine_bench -- \
//!     --model synthetic:llama-7b --device cuda --batch 64,256

#[cfg(feature = "nccl")]
mod allreduce;
#[cfg(feature = "cuda")]
mod bandwidth;
#[cfg(feature = "cuda")]
mod chain;
#[cfg(feature = "cuda")]
mod check;
#[cfg(feature = "cuda")]
mod graphs;
#[cfg(feature = "cuda")]
mod inflight;
#[cfg(feature = "cuda")]
mod power;
#[cfg(feature = "cuda")]
mod prefill;
#[cfg(feature = "cuda")]
mod profile;

use std::time::Instant;
use wattbench_core::summarize;
use wattbench_engine::device::{parse_device, parse_dtype};
use wattbench_engine::*;
use wattbench_meter::{EnergySensor, Sampler, SensorSet, SensorSpec};
use wattbench_workload::hub::Hub;
use wattbench_workload::sample::SplitMix64;

pub(crate) fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// A comma-separated list of numbers after `name`.
pub(crate) fn numbers(
    args: &[String],
    name: &str,
    default: &str,
) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    arg(args, name, default)
        .split(',')
        .map(|n| Ok(n.parse()?))
        .collect()
}

/// The sensors of `--sensor` (default `nvml`), narrowed to the `gpus` GPUs from `device` on.
pub(crate) fn sensors(
    args: &[String],
    device: &candle_core::Device,
    gpus: usize,
) -> Result<SensorSet, Box<dyn std::error::Error>> {
    let specs = SensorSpec::parse_list(&[arg(args, "--sensor", "nvml")])?;
    let mut sensors = SensorSet::open(&specs)?;
    if let candle_core::DeviceLocation::Cuda { gpu_id } = device.location() {
        let used: Vec<String> = (gpu_id..gpu_id + gpus).map(|i| i.to_string()).collect();
        sensors.select(&used)?;
    }
    Ok(sensors)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, "--mode", "throughput").as_str() {
        "greedy" => greedy(&args),
        #[cfg(feature = "nccl")]
        "allreduce" => allreduce::run(&args),
        #[cfg(feature = "cuda")]
        "bandwidth" => bandwidth::run(&args),
        #[cfg(feature = "cuda")]
        "chain" => chain::run(&args),
        #[cfg(feature = "cuda")]
        "check" => check::run(&args),
        #[cfg(feature = "cuda")]
        "graphs" => graphs::run(&args),
        #[cfg(feature = "cuda")]
        "inflight" => inflight::run(&args),
        #[cfg(feature = "cuda")]
        "power" => power::run(&args),
        #[cfg(feature = "cuda")]
        "profile" => profile::run(&args),
        _ => throughput(&args),
    }
}

/// The median GPU time (CUDA events on `stream`) of `reps` runs of `f`, after one run not timed.
#[cfg(feature = "cuda")]
pub(crate) fn median_ms(
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    reps: usize,
    f: &mut dyn FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    use cudarc::driver::sys::CUevent_flags;
    f()?;
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let a = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        f()?;
        let b = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        ms.push(a.elapsed_ms(&b)? as f64);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

pub(crate) type Loaded = (String, candle_core::Device, candle_core::DType, LoadedModel);

/// The model, device and dtype of `--model`, `--device` and `--dtype`, loaded; with `--gpus N`
/// (N > 1), split over GPUs 0..N with NCCL.
pub(crate) fn load(
    args: &[String],
    model: &str,
    device: &str,
    dtype: &str,
) -> Result<Loaded, Box<dyn std::error::Error>> {
    let model = arg(args, "--model", model);
    let gpus: usize = arg(args, "--gpus", "1").parse()?;
    let device = parse_device(&arg(args, "--device", device))?;
    let dtype = parse_dtype(&arg(args, "--dtype", dtype), &device)?;
    let spec = ModelSpec::parse(&model)?;
    if gpus > 1 {
        #[cfg(feature = "nccl")]
        {
            let devices = wattbench_engine::device::cuda_devices(&(0..gpus).collect::<Vec<_>>())?;
            let group = wattbench_engine::cuda::nccl::NcclGroup::new(&devices)?;
            let loaded = load_split(&spec, &model, &devices, dtype, 0, &Hub::from_env(), group)?;
            return Ok((model, devices[0].clone(), dtype, loaded));
        }
        #[cfg(not(feature = "nccl"))]
        return Err("--gpus needs a build with the nccl feature (--features nccl)".into());
    }
    let loaded = load_model(&spec, &model, &device, dtype, 0, &Hub::from_env())?;
    Ok((model, device, dtype, loaded))
}

fn greedy(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let steps: u32 = arg(args, "--steps", "32").parse()?;
    let (model, device, dtype, loaded) = load(args, "synthetic:smollm2-135m", "cpu", "f32")?;
    let vocab = loaded.model.cfg.vocab_size as u64;
    let mut rng = SplitMix64::new(2026);
    let reqs: Vec<Request> = [12usize, 7, 20]
        .iter()
        .map(|&n| Request {
            prompt: (0..n).map(|_| rng.below(vocab) as u32).collect(),
            max_new_tokens: steps,
        })
        .collect();
    let params = GenerationParams {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ignore_eos: true,
        eos_ids: vec![],
    };
    let r = loaded.generate(&reqs, &params, None, &mut |_, _| {})?;
    let tokens: Vec<&Vec<u32>> = r.outputs.iter().map(|o| &o.tokens).collect();
    println!(
        "{}",
        serde_json::json!({ "model": model, "device": format!("{:?}", device.location()), "gpus": loaded.devices(), "dtype": format!("{dtype:?}"), "tokens": tokens })
    );
    Ok(())
}

/// The peer workload's batch of `b`: random prompts of `prompt_len` tokens (seeded by `b`), `new`
/// new tokens each.
pub(crate) fn peer_requests(b: usize, prompt_len: usize, new: u32, vocab: u64) -> Vec<Request> {
    let mut rng = SplitMix64::new(b as u64);
    (0..b)
        .map(|_| Request {
            prompt: (0..prompt_len)
                .map(|_| 3 + rng.below(vocab - 3) as u32)
                .collect(),
            max_new_tokens: new,
        })
        .collect()
}

fn throughput(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let (model, device, dtype, loaded) = load(args, "synthetic:llama-7b", "cuda", "auto")?;
    device.synchronize()?;
    let load_s = t.elapsed().as_secs_f64();
    let prompt_len: usize = arg(args, "--prompt-len", "128").parse()?;
    let new: u32 = arg(args, "--new", "256").parse()?;
    let temperature: f64 = arg(args, "--temperature", "0.8").parse()?;
    let top_p: f64 = arg(args, "--top-p", "0.95").parse()?;
    let batches = numbers(args, "--batch", "64")?;
    let repeats: usize = arg(args, "--repeat", "1").parse()?;
    let sensors = sensors(args, &device, loaded.devices())?;
    let vocab = loaded.model.cfg.vocab_size as u64;
    let params = GenerationParams {
        temperature,
        top_p,
        seed: 0,
        ignore_eos: true,
        eos_ids: vec![],
    };
    let devices = sensors.devices().to_vec();
    let sampler = Sampler::start(sensors, std::time::Duration::from_millis(100), true, None)?;
    for &b in &batches {
        let reqs = peer_requests(b, prompt_len, new, vocab);
        let w = Instant::now();
        if let Err(e) = loaded.generate(&reqs, &params, None, &mut |_, _| {}) {
            println!(
                "{}",
                serde_json::json!({ "model": model, "batch": b, "error": e.to_string() })
            );
            continue;
        }
        let warmup_s = w.elapsed().as_secs_f64();
        for repeat in 0..repeats {
            let t0 = sampler.mark();
            let r = loaded.generate(&reqs, &params, None, &mut |_, _| {})?;
            let t1 = sampler.mark();
            let secs = t1 - t0;
            let toks: usize = r.outputs.iter().map(|o| o.tokens.len()).sum();
            let s = summarize(&devices, &sampler.snapshot(), t0, t1, None);
            let d0 = s.devices.first();
            let per_gpu: Vec<_> = s
                .devices
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "device": d.info.id,
                        "energy_j": d.energy_j,
                        "watts": d.avg_power_w,
                        "sm_util_pct": d.mean_sm_util_pct,
                        "max_mem_used_bytes": d.max_mem_used_bytes,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "engine": "wattbench",
                    "model": model,
                    "dtype": format!("{dtype:?}"),
                    "batch": b,
                    "repeat": repeat,
                    "prompt": prompt_len,
                    "gen": new,
                    "temperature": temperature,
                    "top_p": top_p,
                    "load_s": load_s,
                    "warmup_s": warmup_s,
                    "seconds": secs,
                    "tokens": toks,
                    "tok_per_s": toks as f64 / secs,
                    "prefill_s": r.prefill_s,
                    "decode_s": r.decode_s,
                    "cuda_graph": r.cuda_graph,
                    "decode_tok_per_s": (toks - b) as f64 / r.decode_s,
                    "energy_j": s.energy_j,
                    "watts": s.avg_power_w,
                    "j_per_tok": s.energy_j.map(|e| e / toks as f64),
                    "j_per_resp": s.energy_j.map(|e| e / b as f64),
                    "energy_method": d0.and_then(|d| d.energy_method),
                    "mean_sm_util_pct": d0.and_then(|d| d.mean_sm_util_pct),
                    "mean_sm_clock_mhz": d0.and_then(|d| d.mean_sm_clock_mhz),
                    "max_temperature_c": d0.and_then(|d| d.max_temperature_c),
                    "max_mem_used_bytes": d0.and_then(|d| d.max_mem_used_bytes),
                    "gpus": loaded.devices(),
                    "per_gpu": per_gpu,
                    "warnings": s.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                })
            );
        }
    }
    sampler.stop();
    Ok(())
}
