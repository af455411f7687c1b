//! Loading prompts from the dataset flags.

use crate::cli::DataArgs;
use wattbench_workload::{DatasetSpec, LoadOptions, Tokenizer};

/// Load options from the flags, the rest (hub settings) from the environment.
pub fn load_options(data: &DataArgs) -> LoadOptions {
    let mut o = LoadOptions::from_env();
    o.split = data.split;
    if data.data_dir.is_some() {
        o.data_dir = data.data_dir.clone();
    }
    o.prompt_field = data.prompt_field.clone();
    o.reference_field = data.reference_field.clone();
    o.gsm8k_instruction = data.gsm8k_instruction;
    o.hf_config = data.hf_config.clone();
    o
}

pub fn tokenizer(data: &DataArgs) -> anyhow::Result<Option<Tokenizer>> {
    Ok(data.tokenizer.as_deref().map(Tokenizer::load).transpose()?)
}

pub fn spec(name: &str) -> anyhow::Result<DatasetSpec> {
    Ok(DatasetSpec::parse(name)?)
}
