//! Parsing of `--dataset` values.

use crate::error::WorkloadError;
use crate::synthetic::SyntheticSpec;
use std::path::PathBuf;

/// Datasets wattbench knows by name, and the generic forms.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSpec {
    /// Stanford Alpaca: a JSON array of `{instruction, input, output}`.
    Alpaca { path: Option<PathBuf> },
    /// GSM8K: JSON Lines of `{question, answer}`.
    Gsm8k { path: Option<PathBuf> },
    /// ShareGPT: a JSON array of `{conversations: [{from, value}, ...]}`.
    ShareGpt { path: Option<PathBuf> },
    /// Any JSON Lines file, with `--prompt-field` (and optional `--reference-field`).
    Jsonl { path: PathBuf },
    /// Any CSV file with a header, with `--prompt-field` (and optional `--reference-field`).
    Csv { path: PathBuf },
    /// A dataset repository on the Hugging Face hub.
    Hub { repo: String, revision: String },
    /// Prompts of exact token lengths built from a tokenizer's vocabulary.
    Synthetic(SyntheticSpec),
}

/// Names that `wattbench datasets` lists.
pub const KNOWN: [&str; 3] = ["alpaca", "gsm8k", "sharegpt"];

impl DatasetSpec {
    pub fn parse(s: &str) -> Result<DatasetSpec, WorkloadError> {
        let s = s.trim();
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let invalid = |reason: &str| WorkloadError::InvalidSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let path = |a: Option<&str>| a.filter(|a| !a.is_empty()).map(PathBuf::from);
        match kind {
            "alpaca" => Ok(DatasetSpec::Alpaca { path: path(arg) }),
            "gsm8k" => Ok(DatasetSpec::Gsm8k { path: path(arg) }),
            "sharegpt" => Ok(DatasetSpec::ShareGpt { path: path(arg) }),
            "jsonl" => path(arg)
                .map(|path| DatasetSpec::Jsonl { path })
                .ok_or_else(|| invalid("name the file, as in jsonl:prompts.jsonl")),
            "csv" => path(arg)
                .map(|path| DatasetSpec::Csv { path })
                .ok_or_else(|| invalid("name the file, as in csv:prompts.csv")),
            "hf" => {
                let arg = arg.unwrap_or("");
                let (repo, revision) = arg.split_once('@').unwrap_or((arg, "main"));
                let ok = repo.split('/').count() == 2
                    && repo.split('/').all(|p| !p.is_empty())
                    && !revision.is_empty();
                if !ok {
                    return Err(invalid(
                        "name a hub dataset as hf:ORG/NAME or hf:ORG/NAME@REVISION",
                    ));
                }
                Ok(DatasetSpec::Hub {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                })
            }
            "synthetic" => Ok(DatasetSpec::Synthetic(SyntheticSpec::parse(
                arg.unwrap_or(""),
            )?)),
            _ => Err(WorkloadError::UnknownDataset {
                spec: s.to_string(),
            }),
        }
    }

    /// Canonical name of the dataset.
    pub fn name(&self) -> String {
        match self {
            DatasetSpec::Alpaca { .. } => "alpaca".into(),
            DatasetSpec::Gsm8k { .. } => "gsm8k".into(),
            DatasetSpec::ShareGpt { .. } => "sharegpt".into(),
            DatasetSpec::Jsonl { .. } => "jsonl".into(),
            DatasetSpec::Csv { .. } => "csv".into(),
            DatasetSpec::Hub { repo, .. } => format!("hf:{repo}"),
            DatasetSpec::Synthetic(_) => "synthetic".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_paths_and_hub_ids() {
        assert_eq!(
            DatasetSpec::parse("alpaca").unwrap(),
            DatasetSpec::Alpaca { path: None }
        );
        assert_eq!(
            DatasetSpec::parse("gsm8k:/d/test.jsonl").unwrap(),
            DatasetSpec::Gsm8k {
                path: Some("/d/test.jsonl".into())
            }
        );
        assert_eq!(
            DatasetSpec::parse("hf:openai/gsm8k@v1").unwrap(),
            DatasetSpec::Hub {
                repo: "openai/gsm8k".into(),
                revision: "v1".into()
            }
        );
        assert!(DatasetSpec::parse("hf:gsm8k").is_err());
        assert!(DatasetSpec::parse("jsonl").is_err());
        let e = DatasetSpec::parse("squad").unwrap_err().to_string();
        assert!(e.contains("unknown dataset \"squad\""), "{e}");
    }
}
