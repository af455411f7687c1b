//! `wattbench run`: one benchmark configuration, measured batch by batch and stored.

use crate::cli::{ModelArgs, OutputLengths, RunArgs};
use crate::runner::execute::{self, Context};
use crate::runner::plan::{self, ModelLimits};
use crate::runner::progress::{self, Progress};
use crate::runner::summary::{self, Repeat};
use crate::{engine, meters, prompts};
use anyhow::{bail, Context as _};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use wattbench_core::{DeviceKind, RunConfig, RunRecord, RunStatus, Warning};
use wattbench_engine::GenerationParams;
use wattbench_meter::{EnergySensor, Sampler};
use wattbench_store::Store;
use wattbench_workload::{SampleOptions, Tokenizer};

/// The defaults of a run without `--model`: small enough for any laptop.
const QUICK: (usize, usize, u32, usize) = (64, 16, 32, 3);
/// The paper's defaults: 4,096 prompts, batch 64, 256 new tokens, one repeat.
const PAPER: (usize, usize, u32, usize) = (4096, 64, 256, 1);

/// `auto`: the first GPU in a CUDA build where one answers, else the CPU.
fn resolve_device(flag: &str) -> String {
    if flag != "auto" {
        return flag.to_string();
    }
    if cfg!(feature = "cuda") && wattbench_engine::device::parse_device("cuda").is_ok() {
        "cuda:0".into()
    } else {
        "cpu".into()
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let quick = args.model.is_none();
    let (d_prompts, d_batch, d_new, d_repeats) = if quick { QUICK } else { PAPER };
    let device = resolve_device(&args.device);
    let model = args.model.clone().unwrap_or_else(|| {
        if device.starts_with("cuda") {
            "synthetic:smollm2-135m".into()
        } else {
            "synthetic:tiny".into()
        }
    });
    let num_prompts = args.num_prompts.unwrap_or(d_prompts);
    let batch_size = args.batch_size.unwrap_or(d_batch);
    let max_new_tokens = args.max_new_tokens.unwrap_or(d_new);
    let repeats = args.repeats.unwrap_or(d_repeats);
    for (flag, v) in [
        ("--num-prompts", num_prompts),
        ("--batch-size", batch_size),
        ("--max-new-tokens", max_new_tokens as usize),
        ("--repeats", repeats),
    ] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if !(0.0..=1.0).contains(&args.sampling.top_p) || args.sampling.top_p == 0.0 {
        bail!("--top-p {} is outside (0, 1]", args.sampling.top_p);
    }
    if args.sampling.temperature < 0.0 {
        bail!(
            "--temperature {} is negative; use 0 for greedy decoding",
            args.sampling.temperature
        );
    }
    let spec = prompts::spec(&args.dataset)?;
    if args.score && !args.dataset.starts_with("gsm8k") {
        bail!(
            "--score checks GSM8K's final answers, and --dataset {} is not GSM8K; drop --score or use --dataset gsm8k",
            args.dataset
        );
    }

    // Open the database before anything slow, so that a bad --db fails at once.
    let db_path = Store::resolve_path(args.db.db.as_deref());
    let mut store = Store::open(&db_path)?;

    let mut sensors = meters::open(&args.sensor)?;
    if let Some(gpu) = device.strip_prefix("cuda") {
        let index = gpu.strip_prefix(':').unwrap_or("0").to_string();
        let gpus = sensors.devices().iter().any(|d| d.kind == DeviceKind::Gpu);
        if args.sensor.devices.is_empty() && gpus {
            // The GPU the model runs on, not the machine's other GPUs.
            sensors.select(&[index])?;
        }
    }
    let devices = sensors.devices().to_vec();
    let mut warnings = Vec::new();
    if devices.is_empty() {
        warnings.push(Warning::NoEnergySensor);
    }
    let own = std::process::id();
    for (k, pids) in sensors.processes() {
        let others: Vec<u32> = pids.into_iter().filter(|&p| p != own).collect();
        if !others.is_empty() {
            warnings.push(Warning::OtherProcesses {
                device: devices[k].id.clone(),
                pids: others,
            });
        }
    }

    let mut loaded = engine::load(&ModelArgs {
        model: model.clone(),
        device: device.clone(),
        dtype: args.dtype.clone(),
        weights_seed: args.weights_seed,
        tokenizer: None,
    })?;
    // --tokenizer, else the model's own, else bytes (models with random weights only).
    let tokenizer = match (&args.data.tokenizer, loaded.tokenizer.take()) {
        (Some(t), _) => Tokenizer::load(t).context("--tokenizer")?,
        (None, Some(t)) => t,
        (None, None) => Tokenizer::bytes(),
    };
    let ds = wattbench_workload::prompts(
        &spec,
        &prompts::load_options(&args.data),
        &SampleOptions {
            num_prompts,
            seed: args.sampling.seed,
            with_replacement: args.with_replacement,
            ..SampleOptions::default()
        },
        Some(&tokenizer),
    )?;
    let config = RunConfig {
        model: model.clone(),
        dataset: args.dataset.clone(),
        split: args.data.split.map(|s| format!("{s:?}").to_lowercase()),
        num_prompts,
        batch_size,
        max_new_tokens,
        output_lengths: match args.output_lengths {
            OutputLengths::Max => "max",
            OutputLengths::Reference => "reference",
        }
        .into(),
        temperature: args.sampling.temperature,
        top_p: args.sampling.top_p,
        seed: args.sampling.seed,
        ignore_eos: args.sampling.ignore_eos,
        device: device.clone(),
        dtype: format!("{:?}", loaded.model.dtype).to_lowercase(),
        weights_seed: args.weights_seed,
        tokenizer: tokenizer.source.clone(),
        chat_template: !args.raw && tokenizer.chat_template().is_some(),
        warmup_batches: args.warmup,
        repeats,
        sensors: args.sensor.sensors.clone(),
        interval_s: args.sensor.interval.as_secs_f64(),
    };
    let plan = plan::plan(
        &ds,
        &tokenizer,
        &config,
        &ModelLimits {
            vocab: loaded.model.cfg.vocab_size,
            context: loaded.model.cfg.max_position_embeddings,
            synthetic: loaded.synthetic,
        },
    )?;

    let progress = Progress::new();
    let (live_tx, live_rx) = std::sync::mpsc::channel();
    let drawer = progress::draw(progress.clone(), live_rx);
    let sampler = Sampler::start(sensors, args.sensor.interval, true, Some(live_tx))
        .context("starting the sampler thread")?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let ctx = Context {
        model: &loaded,
        tokenizer: &tokenizer,
        plan: &plan,
        config: &config,
        params: GenerationParams {
            temperature: config.temperature,
            top_p: config.top_p,
            seed: config.seed,
            ignore_eos: config.ignore_eos,
            eos_ids: tokenizer.eos_id.into_iter().collect(),
        },
        sampler: &sampler,
        devices: &devices,
        warnings,
        sweep: None,
        score: args.score,
        progress: &progress,
        stop: &stop,
    };
    let mut done: Vec<Repeat> = Vec::new();
    let mut failure = None;
    match execute::warm_up(&ctx) {
        Ok(warmup_s) => {
            for repeat in 0..repeats {
                let out = execute::run_repeat(&ctx, repeat, warmup_s);
                let mut record = out.record;
                let mut window = out.window;
                match store.insert_run(&record, window.as_ref()) {
                    Ok((id, measurement)) => {
                        record.id = Some(id);
                        record.measurement_id = measurement;
                        if let Some(w) = &mut window {
                            w.id = measurement;
                        }
                    }
                    Err(e) => eprintln!("error: repeat {} was not stored: {e}", repeat + 1),
                }
                let stopped = record.status != RunStatus::Complete;
                done.push(Repeat { record, window });
                if stopped {
                    failure = out.error;
                    break;
                }
            }
        }
        Err(e) => {
            if execute::infeasible(&e) {
                // Recorded, so that the configuration shows (and is skipped) as not fitting here.
                let record = execute::infeasible_record(&ctx, e.to_string());
                match store.insert_run(&record, None) {
                    Ok((id, _)) => done.push(Repeat {
                        record: RunRecord {
                            id: Some(id),
                            ..record
                        },
                        window: None,
                    }),
                    Err(e) => eprintln!("error: the infeasible run was not stored: {e}"),
                }
            }
            failure = Some(anyhow::Error::new(e).context("the warm-up batch"));
        }
    }
    drop(ctx);
    sampler.stop();
    let _ = drawer.join();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary::to_json(&done, &db_path))?
        );
    } else if !done.is_empty() {
        println!("{}", summary::to_text(&done, &db_path));
    }
    match failure {
        Some(e) => {
            let interrupted = stop.load(std::sync::atomic::Ordering::SeqCst);
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(if interrupted { 130 } else { 1 }))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}
