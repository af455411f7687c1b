//! Loading the embedded engine's model from the flags.

use crate::cli::ModelArgs;
use anyhow::Context;
use wattbench_engine::device::{parse_device, parse_dtype};
use wattbench_engine::{load_model, LoadedModel, ModelSpec};
use wattbench_workload::hub::Hub;
use wattbench_workload::Tokenizer;

/// Loads the model; `--tokenizer` replaces (or supplies) its tokenizer.
pub fn load(args: &ModelArgs) -> anyhow::Result<LoadedModel> {
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype, &device)?;
    let spec = ModelSpec::parse(&args.model)?;
    let mut m = load_model(
        &spec,
        &args.model,
        &device,
        dtype,
        args.weights_seed,
        &Hub::from_env(),
    )?;
    if let Some(t) = &args.tokenizer {
        m.tokenizer = Some(Tokenizer::load(t).context("--tokenizer")?);
    }
    Ok(m)
}
