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

/// Loads the model split over the GPUs `gpus`, tensor-parallel with NCCL (the `nccl` feature):
/// synthetic shards are computed on their GPUs, checkpoints are read on the CPU and cut.
pub fn load_split(args: &ModelArgs, gpus: &[usize]) -> anyhow::Result<LoadedModel> {
    let mut seen = gpus.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != gpus.len() {
        anyhow::bail!("--gpus {gpus:?} names a GPU twice; list each GPU once");
    }
    #[cfg(feature = "nccl")]
    {
        let devices = wattbench_engine::device::cuda_devices(gpus)?;
        let dtype = parse_dtype(&args.dtype, &devices[0])?;
        let spec = ModelSpec::parse(&args.model)?;
        let group =
            wattbench_engine::cuda::nccl::NcclGroup::new(&devices).context("starting NCCL")?;
        Ok(wattbench_engine::load_split(
            &spec,
            &args.model,
            &devices,
            dtype,
            args.weights_seed,
            &Hub::from_env(),
            group,
        )?)
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = args;
        anyhow::bail!(
            "--gpus {gpus:?} splits the model over several GPUs, which needs a wattbench built with the `nccl` feature; \
             rebuild with `cargo build --release --features nccl`"
        )
    }
}
