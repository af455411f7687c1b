//! Turning the shared flags into what a point needs: checked settings, the loaded model with its
//! tokenizer, the sampled prompts, and the point's configuration.

use crate::cli::{ModelArgs, OutputLengths, RunSettings};
use crate::{engine, prompts};
use anyhow::{bail, Context as _};
use wattbench_core::RunConfig;
use wattbench_engine::LoadedModel;
use wattbench_workload::{Dataset, SampleOptions, Tokenizer};

/// Rejects settings that cannot run, naming the flag.
pub fn check(settings: &RunSettings) -> anyhow::Result<()> {
    let s = &settings.sampling;
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        bail!("--top-p {} is outside (0, 1]", s.top_p);
    }
    if s.temperature < 0.0 {
        bail!(
            "--temperature {} is negative; use 0 for greedy decoding",
            s.temperature
        );
    }
    Ok(())
}

/// Rejects a dataset that `--score` cannot score.
pub fn check_score(settings: &RunSettings, dataset: &str) -> anyhow::Result<()> {
    if settings.score && !dataset.starts_with("gsm8k") {
        bail!(
            "--score checks GSM8K's final answers, and --dataset {dataset} is not GSM8K; drop --score or use --dataset gsm8k"
        );
    }
    Ok(())
}

/// `value` must be at least 1.
pub fn positive(flag: &str, value: usize) -> anyhow::Result<()> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(())
}

/// The model on `device`, or split over `gpus` when they are several, and the tokenizer of its
/// prompts: `--tokenizer`, else the model's own, else the byte tokenizer (for models with random
/// weights, which have none).
pub fn model(
    settings: &RunSettings,
    model: &str,
    device: &str,
    gpus: &[usize],
) -> anyhow::Result<(LoadedModel, Tokenizer)> {
    let args = ModelArgs {
        model: model.to_string(),
        device: device.to_string(),
        dtype: settings.dtype.clone(),
        weights_seed: settings.weights_seed,
        tokenizer: None,
    };
    let mut loaded = if gpus.len() > 1 {
        engine::load_split(&args, gpus)?
    } else {
        engine::load(&args)?
    };
    let tokenizer = match (&settings.data.tokenizer, loaded.tokenizer.take()) {
        (Some(t), _) => Tokenizer::load(t).context("--tokenizer")?,
        (None, Some(t)) => t,
        (None, None) => Tokenizer::bytes(),
    };
    Ok((loaded, tokenizer))
}

/// `num_prompts` prompts of `dataset`, drawn with the run's seed.
pub fn dataset(
    settings: &RunSettings,
    dataset: &str,
    num_prompts: usize,
    tokenizer: Option<&Tokenizer>,
) -> anyhow::Result<Dataset> {
    Ok(wattbench_workload::prompts(
        &prompts::spec(dataset)?,
        &prompts::load_options(&settings.data),
        &SampleOptions {
            num_prompts,
            seed: settings.sampling.seed,
            with_replacement: settings.with_replacement,
            ..SampleOptions::default()
        },
        tokenizer,
    )?)
}

/// One point's configuration, from the flags alone (so that a sweep knows which points are done
/// before loading any model).
#[allow(clippy::too_many_arguments)]
pub fn config(
    settings: &RunSettings,
    model: &str,
    device: &str,
    gpus: &[usize],
    dataset: &str,
    num_prompts: usize,
    batch_size: usize,
    max_new_tokens: u32,
    repeats: usize,
) -> RunConfig {
    RunConfig {
        model: model.to_string(),
        dataset: dataset.to_string(),
        split: settings.data.split.map(|s| format!("{s:?}").to_lowercase()),
        num_prompts,
        batch_size,
        max_new_tokens,
        output_lengths: match settings.output_lengths {
            OutputLengths::Max => "max",
            OutputLengths::Reference => "reference",
        }
        .into(),
        temperature: settings.sampling.temperature,
        top_p: settings.sampling.top_p,
        seed: settings.sampling.seed,
        ignore_eos: settings.sampling.ignore_eos,
        device: device.to_string(),
        gpus: if gpus.len() > 1 {
            gpus.to_vec()
        } else {
            Vec::new()
        },
        dtype: match settings.dtype.as_str() {
            "auto" if device == "cpu" => "f32".into(),
            "auto" => "bf16".into(),
            other => other.to_string(),
        },
        weights_seed: settings.weights_seed,
        tokenizer: settings
            .data
            .tokenizer
            .clone()
            .unwrap_or_else(|| "model".into()),
        chat_template: !settings.raw,
        warmup_batches: settings.warmup,
        repeats,
        sensors: settings.sensor.sensors.clone(),
        interval_s: settings.sensor.interval.as_secs_f64(),
        power_limit: None,
        server: None,
    }
}
