//! Errors of loading, sampling and tokenizing. Each names the input and the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("unknown dataset {spec:?}; use alpaca, gsm8k, sharegpt (each optionally :PATH), jsonl:PATH, csv:PATH, hf:ORG/NAME or synthetic:in=N,out=M")]
    UnknownDataset { spec: String },

    #[error("invalid dataset {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },

    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: line {line}, column {column}: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{}, line {line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{}, record {record}: missing field {field:?}{hint}", path.display())]
    MissingField {
        path: PathBuf,
        record: String,
        field: String,
        hint: String,
    },

    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    #[error("dataset {dataset} is empty ({source_desc}); check the file, the split or the fields")]
    Empty {
        dataset: String,
        source_desc: String,
    },

    #[error(
        "--num-prompts {requested} is more than the {available} prompts of {dataset}; pass --num-prompts {available} \
         or less, or --with-replacement to draw with replacement"
    )]
    NotEnough {
        dataset: String,
        requested: usize,
        available: usize,
    },

    #[error("{dataset} was not found locally and {reason}. {how}")]
    NotAvailable {
        dataset: String,
        reason: String,
        how: String,
    },

    #[error("Hugging Face hub, {what}: {message}")]
    Hub { what: String, message: String },

    #[error("tokenizer {source_desc}: {message}")]
    Tokenizer {
        source_desc: String,
        message: String,
    },

    #[error("GGUF file {}: {message}", path.display())]
    Gguf { path: PathBuf, message: String },
}

impl WorkloadError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WorkloadError::Io {
            path: path.into(),
            source,
        }
    }
}
