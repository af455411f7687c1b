//! `wattbench run`: one benchmark configuration, measured batch by batch and stored.

use crate::cli::{ModelArgs, OutputLengths, RunArgs};
use crate::runner::session::{resolve_device, Session};
use crate::runner::summary;
use crate::{engine, prompts};
use anyhow::{bail, Context as _};
use std::collections::HashSet;
use std::process::ExitCode;
use wattbench_core::RunConfig;
use wattbench_workload::{SampleOptions, Tokenizer};

/// The defaults of a run without `--model`: small enough for any laptop.
const QUICK: (usize, usize, u32, usize) = (64, 16, 32, 3);
/// The paper's defaults: 4,096 prompts, batch 64, 256 new tokens, one repeat.
const PAPER: (usize, usize, u32, usize) = (4096, 64, 256, 1);

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

    let mut session = Session::open(args.db.db.as_deref(), &args.sensor, &device)?;
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
    let result = session.run_point(
        &loaded,
        &tokenizer,
        &config,
        &ds,
        args.score,
        None,
        &HashSet::new(),
    );
    let interrupted = session.interrupted();
    let db_path = session.db_path.clone();
    session.close();
    let result = result?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary::to_json(&result.repeats, &db_path))?
        );
    } else if !result.repeats.is_empty() {
        println!("{}", summary::to_text(&result.repeats, &db_path));
    }
    match result.failure {
        Some(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(if interrupted { 130 } else { 1 }))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}
