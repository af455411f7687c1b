//! Workloads: datasets (Alpaca, GSM8K, ShareGPT, JSONL, CSV, Hugging Face hub, synthetic), their
//! prompt templates, seeded sampling and tokenizers.

pub mod error;
pub mod gguf;
pub mod hub;
pub mod load;
pub mod record;
pub mod rows;
pub mod sample;
pub mod spec;
pub mod stats;
pub mod synthetic;
pub mod template;
pub mod tokenizer;

pub use error::WorkloadError;
pub use load::{load, LoadOptions, Split};
pub use record::{gsm8k_final_answer, words_paper, words_unicode, Dataset, PromptRecord};
pub use sample::Order;
pub use spec::DatasetSpec;
pub use tokenizer::Tokenizer;

/// How many prompts to draw, and in which order to run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleOptions {
    /// The paper draws 4,096 prompts from each dataset.
    pub num_prompts: usize,
    pub seed: u64,
    pub order: Order,
    pub with_replacement: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            num_prompts: 4096,
            seed: 0,
            order: Order::Random,
            with_replacement: false,
        }
    }
}

/// The prompts of a run: `sample.num_prompts` drawn from the dataset with `sample.seed`, in
/// `sample.order`. Synthetic datasets are built from `tokenizer`, which they require; by-length
/// order counts tokens with it when given, else characters.
pub fn prompts(
    spec: &DatasetSpec,
    load_opts: &LoadOptions,
    sample: &SampleOptions,
    tokenizer: Option<&Tokenizer>,
) -> Result<Dataset, WorkloadError> {
    let mut ds = match spec {
        DatasetSpec::Synthetic(s) => {
            let tok = tokenizer.ok_or_else(|| WorkloadError::InvalidSpec {
                spec: "synthetic".into(),
                reason: "synthetic prompts are built from a tokenizer's vocabulary; pass --tokenizer (or a --model that has one)"
                    .into(),
            })?;
            Dataset {
                name: "synthetic".into(),
                source: format!("synthetic from {}", tok.source),
                records: synthetic::build(s, sample.num_prompts, sample.seed, tok)?,
                skipped: 0,
            }
        }
        _ => {
            let all = load(spec, load_opts)?;
            let n = all.records.len();
            if sample.num_prompts > n && !sample.with_replacement {
                return Err(WorkloadError::NotEnough {
                    dataset: all.name,
                    requested: sample.num_prompts,
                    available: n,
                });
            }
            let picks = if sample.with_replacement {
                sample::with_replacement(n, sample.num_prompts, sample.seed)
            } else {
                sample::without_replacement(n, sample.num_prompts, sample.seed)
            };
            let records = picks.into_iter().map(|i| all.records[i].clone()).collect();
            Dataset { records, ..all }
        }
    };
    match sample.order {
        Order::Random => {}
        Order::AsIs => ds.records.sort_by_key(|r| r.index),
        Order::ByLength => {
            let mut keyed: Vec<(usize, PromptRecord)> = Vec::with_capacity(ds.records.len());
            for r in ds.records.drain(..) {
                let len = match (&r.prompt_tokens, tokenizer) {
                    (Some(t), _) => t.len(),
                    (None, Some(tok)) => tok.count(&r.prompt)?,
                    (None, None) => r.prompt.chars().count(),
                };
                keyed.push((len, r));
            }
            keyed.sort_by_key(|(len, r)| (*len, r.index));
            ds.records = keyed.into_iter().map(|(_, r)| r).collect();
        }
    }
    Ok(ds)
}
