//! Errors of the engine. Each names the input and the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model {model:?}: {reason}")]
    UnknownModel { model: String, reason: String },

    #[error("model config {}: {message}; fix the file or pick a synthetic preset", path.display())]
    Config { path: PathBuf, message: String },

    #[error("model weights {}: {message}", path.display())]
    Weights { path: PathBuf, message: String },

    #[error("GGUF model {}: {message}", path.display())]
    Gguf { path: PathBuf, message: String },

    #[error("--device {device} needs a wattbench built with the `{feature}` feature; rebuild with `cargo build --release --features {feature}`")]
    FeatureMissing {
        device: String,
        feature: &'static str,
    },

    #[error("--device {device}: {message}")]
    Device { device: String, message: String },

    #[error(
        "prompt {index} has {tokens} tokens and asks for {new} new ones, more than the model's context of {context}; \
         lower --max-new-tokens or use shorter prompts"
    )]
    TooLong {
        index: usize,
        tokens: usize,
        new: usize,
        context: usize,
    },

    #[error(
        "out of memory: {model} at batch {batch} with {tokens} tokens per sequence does not fit on {device} ({message}); \
         try a batch of {suggestion} or less, shorter sequences, or more GPUs"
    )]
    OutOfMemory {
        model: String,
        batch: usize,
        tokens: usize,
        device: String,
        suggestion: usize,
        message: String,
    },

    #[error("token id {id} of prompt {index} is outside the vocabulary of {vocab}; use the model's own tokenizer")]
    BadToken { index: usize, id: u32, vocab: usize },

    #[error("cannot shard the model over {world} GPUs: {message}; pick a number of GPUs that fits, such as 1, 2 or 4")]
    Shard { world: usize, message: String },

    #[error("engine: {0}")]
    Candle(#[from] candle_core::Error),
}

impl EngineError {
    /// Whether the device ran out of memory (while generating, or while loading weights).
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            EngineError::OutOfMemory { .. } => true,
            EngineError::Candle(e) => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or("").to_ascii_lowercase();
                first.contains("out of memory") || first.contains("out_of_memory")
            }
            _ => false,
        }
    }
}
