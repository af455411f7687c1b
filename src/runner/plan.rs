//! From a dataset to the requests of a run: token ids, generation lengths and batches.

use anyhow::bail;
use wattbench_core::RunConfig;
use wattbench_workload::{Dataset, Tokenizer};

/// A prompt and its generation do not fit the model's context: the configuration is infeasible.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TooLong(pub String);

/// One prompt, tokenized, with what it may generate.
#[derive(Debug, Clone)]
pub struct PlannedRequest {
    pub dataset_index: usize,
    pub prompt: Vec<u32>,
    pub max_new_tokens: u32,
    pub reference: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub requests: Vec<PlannedRequest>,
    /// What the reader of the results must know about how the prompts were made.
    pub notes: Vec<String>,
}

impl Plan {
    /// The requests in batches of `size`, in order; the last batch may be smaller.
    pub fn batches(&self, size: usize) -> impl Iterator<Item = &[PlannedRequest]> {
        self.requests.chunks(size.max(1))
    }

    /// Most tokens the run can generate.
    pub fn planned_tokens(&self) -> u64 {
        self.requests
            .iter()
            .map(|r| u64::from(r.max_new_tokens))
            .sum()
    }
}

/// What the model accepts.
pub struct ModelLimits {
    pub vocab: usize,
    pub context: usize,
    /// Random weights: token identities carry no meaning, so ids beyond the model's vocabulary
    /// may be folded into it (the lengths, which set the cost, stay the tokenizer's).
    pub synthetic: bool,
}

/// Tokenizes `ds` for a run of `cfg`: the chat template when `cfg.chat_template` and the tokenizer
/// has one, BOS when the tokenizer asks for it; generation lengths from `cfg.output_lengths`.
pub fn plan(
    ds: &Dataset,
    tok: &Tokenizer,
    cfg: &RunConfig,
    limits: &ModelLimits,
) -> anyhow::Result<Plan> {
    let mut notes = Vec::new();
    let mut folded = false;
    let mut requests = Vec::with_capacity(ds.records.len());
    for r in &ds.records {
        let mut ids = match &r.prompt_tokens {
            Some(ids) => ids.clone(),
            None => {
                let text = if cfg.chat_template {
                    tok.apply_chat_template(&r.prompt, None)?
                        .unwrap_or_else(|| r.prompt.clone())
                } else {
                    r.prompt.clone()
                };
                let mut ids = tok.encode(&text)?;
                if let (true, Some(bos)) = (tok.add_bos, tok.bos_id) {
                    if ids.first() != Some(&bos) {
                        ids.insert(0, bos);
                    }
                }
                ids
            }
        };
        if let Some(&id) = ids.iter().find(|&&i| i as usize >= limits.vocab) {
            if !limits.synthetic {
                bail!(
                    "prompt {} has token id {id} from the tokenizer {}, outside the model's vocabulary of {}; \
                     use the model's own tokenizer (--tokenizer)",
                    r.index,
                    tok.source,
                    limits.vocab
                );
            }
            folded = true;
            for i in &mut ids {
                *i %= limits.vocab as u32;
            }
        }
        let max_new = match (cfg.output_lengths.as_str(), &r.reference, r.max_new_tokens) {
            (_, _, Some(n)) => n.min(cfg.max_new_tokens),
            ("reference", Some(reference), None) => {
                (tok.encode(reference)?.len() as u32).clamp(1, cfg.max_new_tokens)
            }
            ("reference", None, None) => bail!(
                "--output-lengths reference needs reference answers, and dataset {} has none for prompt {}; \
                 use --output-lengths max",
                ds.name,
                r.index
            ),
            _ => cfg.max_new_tokens,
        };
        if ids.len() + max_new as usize > limits.context {
            return Err(TooLong(format!(
                "prompt {} of {} has {} tokens and may generate {max_new}, more than the model's context of {}; \
                 lower --max-new-tokens or pick a model with a longer context",
                r.index,
                ds.name,
                ids.len(),
                limits.context
            ))
            .into());
        }
        requests.push(PlannedRequest {
            dataset_index: r.index,
            prompt: ids,
            max_new_tokens: max_new,
            reference: r.reference.clone(),
        });
    }
    notes.push(format!("tokenizer: {}", tok.source));
    if tok.source == wattbench_workload::tokenizer::BYTES {
        notes.push(
            "prompts are tokenized as bytes (the model has no tokenizer of its own and none was given): \
             token counts are about four times those of a BPE tokenizer; pass --tokenizer for realistic lengths"
                .into(),
        );
    }
    if folded {
        notes.push(format!(
            "the tokenizer {} has ids beyond the synthetic model's vocabulary of {}; they were folded into it \
             (random weights: lengths matter, identities do not)",
            tok.source, limits.vocab
        ));
    }
    Ok(Plan { requests, notes })
}

/// The final number of a response, as GSM8K scoring reads it: the first number after the last
/// `####` when there is one, else the last number in the text; thousands commas, a trailing period
/// and a `.0` dropped.
pub fn final_number(text: &str) -> Option<String> {
    let (tail, marked) = match text.rsplit_once("####") {
        Some((_, t)) => (t, true),
        None => (text, false),
    };
    let mut numbers = Vec::new();
    let mut cur = String::new();
    for c in tail.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() || (c == '-' && cur.is_empty()) || (c == '.' && !cur.is_empty()) {
            cur.push(c);
        } else if c == ',' && !cur.is_empty() {
            continue;
        } else if !cur.is_empty() {
            let n = cur.trim_end_matches('.');
            if n.chars().any(|c| c.is_ascii_digit()) {
                numbers.push(n.strip_suffix(".0").unwrap_or(n).to_string());
            }
            cur.clear();
        }
    }
    if marked {
        numbers.into_iter().next()
    } else {
        numbers.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::final_number;

    #[test]
    fn final_numbers_are_read_as_gsm8k_scoring_does() {
        assert_eq!(
            final_number("so 3 + 4 = 7.\n#### 1,234").as_deref(),
            Some("1234")
        );
        assert_eq!(
            final_number("She has 5 apples, then 12.").as_deref(),
            Some("12")
        );
        assert_eq!(
            final_number("It costs -3.50 dollars").as_deref(),
            Some("-3.50")
        );
        assert_eq!(final_number("answer: 18.0").as_deref(), Some("18"));
        assert_eq!(final_number("no numbers here"), None);
        assert_eq!(
            final_number("#### 72 dollars, then 5 more").as_deref(),
            Some("72")
        );
    }
}
