//! Finding and reading datasets, and turning rows into prompts.
//!
//! Where data comes from, in this order: an explicit path (`alpaca:PATH`); the data directory
//! (`--data-dir`, else `WATTBENCH_DATA`), laid out as `alpaca/alpaca_data.json`,
//! `gsm8k/{train,test}.jsonl`, `sharegpt/*.json`; the GSM8K test split bundled in wattbench; the
//! Hugging Face hub (`tatsu-lab/alpaca`, `openai/gsm8k`, any `hf:ORG/NAME`), cached once.

use crate::error::WorkloadError;
use crate::hub::{split_files, Hub};
use crate::record::{Dataset, PromptRecord};
use crate::rows::{self, text, FileFormat, Row};
use crate::spec::DatasetSpec;
use crate::template;
use std::path::{Path, PathBuf};

/// The GSM8K test split (MIT), bundled so that the default run needs no download.
pub const BUNDLED_GSM8K_TEST: &str = include_str!("../data/gsm8k/test.jsonl");

/// Environment variable naming the data directory.
pub const DATA_ENV: &str = "WATTBENCH_DATA";

const ALPACA_HUB: &str = "tatsu-lab/alpaca";
const GSM8K_HUB: &str = "openai/gsm8k";
const SHAREGPT_HUB: &str = "anon8231489123/ShareGPT_Vicuna_unfiltered";
const SHAREGPT_FILE: &str = "ShareGPT_V3_unfiltered_cleaned_split.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
    /// Train and test together (the paper's GSM8K pool of 8,792 problems).
    All,
}

impl Split {
    pub fn parse(s: &str) -> Result<Split, String> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            "all" => Ok(Split::All),
            _ => Err(format!("unknown split {s:?}; use train, test or all")),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Split::Train => &["train"],
            Split::Test => &["test"],
            Split::All => &["train", "test"],
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `None`: the dataset's default (GSM8K: test, which is bundled; others: train).
    pub split: Option<Split>,
    pub data_dir: Option<PathBuf>,
    pub prompt_field: Option<String>,
    pub reference_field: Option<String>,
    pub gsm8k_instruction: bool,
    pub hf_config: Option<String>,
    pub hub: Hub,
}

impl LoadOptions {
    /// Options with the data directory and hub settings taken from the environment.
    pub fn from_env() -> LoadOptions {
        LoadOptions {
            split: None,
            data_dir: std::env::var_os(DATA_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            prompt_field: None,
            reference_field: None,
            gsm8k_instruction: false,
            hf_config: None,
            hub: Hub::from_env(),
        }
    }
}

/// How rows map to prompts.
#[derive(Debug, Clone, PartialEq)]
enum Schema {
    Alpaca,
    Gsm8k,
    ShareGpt,
    Fields {
        prompt: String,
        reference: Option<String>,
    },
}

/// Where a named dataset would be loaded from, without loading it (for `wattbench datasets`).
pub fn locate(spec: &DatasetSpec, opts: &LoadOptions) -> String {
    match local_files(spec, opts) {
        Some(Local::Files(files)) => files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        Some(Local::Bundled) => "bundled GSM8K test split (no download)".into(),
        None => match hub_repo(spec) {
            Some(repo) => match opts.hub.cached(&repo, "main") {
                Some((dir, _)) => format!("hub cache {}", dir.display()),
                None if opts.hub.offline => {
                    format!("hub {repo} (offline, not cached: unavailable)")
                }
                None => format!(
                    "hub {}/datasets/{repo} (downloaded once into {})",
                    opts.hub.endpoint,
                    opts.hub.cache.display()
                ),
            },
            None => "built at run time from --tokenizer".into(),
        },
    }
}

enum Local {
    Files(Vec<PathBuf>),
    Bundled,
}

fn first_existing(candidates: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| p.is_file())
}

fn local_files(spec: &DatasetSpec, opts: &LoadOptions) -> Option<Local> {
    let dir = opts.data_dir.as_deref();
    match spec {
        DatasetSpec::Alpaca { path: Some(p) }
        | DatasetSpec::Gsm8k { path: Some(p) }
        | DatasetSpec::ShareGpt { path: Some(p) }
        | DatasetSpec::Jsonl { path: p }
        | DatasetSpec::Csv { path: p } => Some(Local::Files(vec![p.clone()])),
        DatasetSpec::Alpaca { path: None } => {
            let d = dir?;
            first_existing([
                d.join("alpaca/alpaca_data.json"),
                d.join("alpaca_data.json"),
            ])
            .map(|p| Local::Files(vec![p]))
        }
        DatasetSpec::Gsm8k { path: None } => {
            let split = opts.split.unwrap_or(Split::Test);
            if let Some(d) = dir {
                let files: Vec<PathBuf> = split
                    .names()
                    .iter()
                    .map(|s| d.join(format!("gsm8k/{s}.jsonl")))
                    .collect();
                if files.iter().all(|f| f.is_file()) {
                    return Some(Local::Files(files));
                }
            }
            (split == Split::Test).then_some(Local::Bundled)
        }
        DatasetSpec::ShareGpt { path: None } => {
            let d = dir?.join("sharegpt");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            files.into_iter().next().map(|p| Local::Files(vec![p]))
        }
        DatasetSpec::Hub { .. } | DatasetSpec::Synthetic(_) => None,
    }
}

fn hub_repo(spec: &DatasetSpec) -> Option<String> {
    match spec {
        DatasetSpec::Alpaca { path: None } => Some(ALPACA_HUB.into()),
        DatasetSpec::Gsm8k { path: None } => Some(GSM8K_HUB.into()),
        DatasetSpec::ShareGpt { path: None } => Some(SHAREGPT_HUB.into()),
        DatasetSpec::Hub { repo, .. } => Some(repo.clone()),
        _ => None,
    }
}

fn schema_of(spec: &DatasetSpec) -> Option<Schema> {
    match spec {
        DatasetSpec::Alpaca { .. } => Some(Schema::Alpaca),
        DatasetSpec::Gsm8k { .. } => Some(Schema::Gsm8k),
        DatasetSpec::ShareGpt { .. } => Some(Schema::ShareGpt),
        _ => None,
    }
}

/// Guesses the schema from the first row's fields.
fn detect(rows: &[Row]) -> Option<Schema> {
    let f = &rows.first()?.fields;
    if f.contains_key("instruction") {
        Some(Schema::Alpaca)
    } else if f.contains_key("question") && f.contains_key("answer") {
        Some(Schema::Gsm8k)
    } else if f.contains_key("conversations") {
        Some(Schema::ShareGpt)
    } else {
        None
    }
}

/// Loads every record of a dataset (synthetic datasets are built by [`crate::prompts`]).
pub fn load(spec: &DatasetSpec, opts: &LoadOptions) -> Result<Dataset, WorkloadError> {
    let name = spec.name();
    let mut schema = schema_of(spec);
    if let (Some(prompt), None) = (&opts.prompt_field, &schema) {
        schema = Some(Schema::Fields {
            prompt: prompt.clone(),
            reference: opts.reference_field.clone(),
        });
    }
    let (source, rows_by_file): (String, Vec<(PathBuf, Vec<Row>)>) = match local_files(spec, opts) {
        Some(Local::Bundled) => {
            let path = PathBuf::from("bundled:gsm8k/test.jsonl");
            let rows = rows::read_json_lines_str(&path, BUNDLED_GSM8K_TEST)?;
            ("bundled GSM8K test split".into(), vec![(path, rows)])
        }
        Some(Local::Files(files)) => {
            let mut all = Vec::new();
            for f in &files {
                let format = match spec {
                    DatasetSpec::Jsonl { .. } => FileFormat::JsonLines,
                    DatasetSpec::Csv { .. } => FileFormat::Csv,
                    DatasetSpec::Gsm8k { .. } => FileFormat::of(f).unwrap_or(FileFormat::JsonLines),
                    _ => FileFormat::of(f).unwrap_or(FileFormat::JsonArray),
                };
                all.push((f.clone(), rows::read(f, format)?));
            }
            (
                files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                all,
            )
        }
        None => {
            let Some(repo) = hub_repo(spec) else {
                return Err(WorkloadError::InvalidSpec {
                    spec: name,
                    reason: "synthetic prompts need a tokenizer and are built, not loaded".into(),
                });
            };
            let revision = match spec {
                DatasetSpec::Hub { revision, .. } => revision.clone(),
                _ => "main".into(),
            };
            let split = opts
                .split
                .unwrap_or(if matches!(spec, DatasetSpec::Gsm8k { .. }) {
                    Split::Test
                } else {
                    Split::Train
                });
            let config = opts.hf_config.clone();
            let is_sharegpt = matches!(spec, DatasetSpec::ShareGpt { .. });
            let want = move |files: &[String]| -> Result<Vec<String>, String> {
                if is_sharegpt {
                    return files
                        .iter()
                        .find(|f| f.as_str() == SHAREGPT_FILE)
                        .map(|f| vec![f.clone()])
                        .ok_or_else(|| format!("the repository has no {SHAREGPT_FILE}"));
                }
                let mut out = Vec::new();
                for s in split.names() {
                    out.extend(split_files(files, s, config.as_deref())?);
                }
                Ok(out)
            };
            let files = opts
                .hub
                .dataset_files(&repo, &revision, &want)
                .map_err(|e| not_available(spec, &repo, e))?;
            let mut all = Vec::new();
            for f in &files {
                let format = FileFormat::of(f).unwrap_or(FileFormat::JsonLines);
                all.push((f.clone(), rows::read(f, format)?));
            }
            (format!("hub {repo}@{revision}"), all)
        }
    };
    let mut records = Vec::new();
    let mut skipped = 0;
    for (path, rows) in rows_by_file {
        let schema = match &schema {
            Some(s) => s.clone(),
            None => detect(&rows).ok_or_else(|| WorkloadError::MissingField {
                path: path.clone(),
                record: "1".into(),
                field: "prompt".into(),
                hint: "; name the prompt's field with --prompt-field (and the reference's with --reference-field)".into(),
            })?,
        };
        skipped += to_records(&path, rows, &schema, opts.gsm8k_instruction, &mut records)?;
    }
    if records.is_empty() {
        return Err(WorkloadError::Empty {
            dataset: name,
            source_desc: source,
        });
    }
    Ok(Dataset {
        name,
        source,
        records,
        skipped,
    })
}

fn not_available(spec: &DatasetSpec, repo: &str, e: WorkloadError) -> WorkloadError {
    let (dataset, how) = match spec {
        DatasetSpec::Alpaca { .. } => (
            "Alpaca",
            "Download alpaca_data.json from tatsu-lab/stanford_alpaca and pass --dataset alpaca:PATH, or put it \
             in DATA_DIR/alpaca/ and pass --data-dir DATA_DIR (or set WATTBENCH_DATA)",
        ),
        DatasetSpec::Gsm8k { .. } => (
            "GSM8K",
            "Download train.jsonl and test.jsonl from openai/grade-school-math into DATA_DIR/gsm8k/ and pass \
             --data-dir DATA_DIR, or use --split test, which is bundled",
        ),
        DatasetSpec::ShareGpt { .. } => (
            "ShareGPT",
            "Download ShareGPT_V3_unfiltered_cleaned_split.json and pass --dataset sharegpt:PATH",
        ),
        _ => (
            "the dataset",
            "Fill the hub cache on a connected machine (the same HF_HOME) and set HF_HUB_OFFLINE=1 here, \
             or download its files and pass them as jsonl:PATH or csv:PATH",
        ),
    };
    WorkloadError::NotAvailable {
        dataset: format!("{dataset} ({repo})"),
        reason: format!("the hub could not supply it ({e})"),
        how: how.into(),
    }
}

fn required(path: &Path, row: &Row, field: &str, hint: &str) -> Result<String, WorkloadError> {
    text(row, field).ok_or_else(|| WorkloadError::MissingField {
        path: path.to_path_buf(),
        record: row.label.clone(),
        field: field.to_string(),
        hint: hint.to_string(),
    })
}

/// Appends the rows' prompts to `out`; returns how many rows were skipped for having none.
fn to_records(
    path: &Path,
    rows: Vec<Row>,
    schema: &Schema,
    gsm8k_instruction: bool,
    out: &mut Vec<PromptRecord>,
) -> Result<usize, WorkloadError> {
    let mut skipped = 0;
    for row in rows {
        let (prompt, reference) = match schema {
            Schema::Alpaca => {
                let instruction = required(
                    path,
                    &row,
                    "instruction",
                    " (Alpaca records need instruction, input, output)",
                )?;
                let input = text(&row, "input").unwrap_or_default();
                (template::alpaca(&instruction, &input), text(&row, "output"))
            }
            Schema::Gsm8k => {
                let question = required(
                    path,
                    &row,
                    "question",
                    " (GSM8K records need question and answer)",
                )?;
                (
                    template::gsm8k(&question, gsm8k_instruction),
                    text(&row, "answer"),
                )
            }
            Schema::ShareGpt => match sharegpt_turns(path, &row)? {
                Some(pair) => pair,
                None => {
                    skipped += 1;
                    continue;
                }
            },
            Schema::Fields { prompt, reference } => {
                let p = required(path, &row, prompt, "; check --prompt-field")?;
                let r = match reference {
                    Some(f) => Some(required(path, &row, f, "; check --reference-field")?),
                    None => None,
                };
                (p, r)
            }
        };
        out.push(PromptRecord {
            index: out.len(),
            prompt,
            reference,
            max_new_tokens: None,
            prompt_tokens: None,
        });
    }
    Ok(skipped)
}

/// The first human turn and the first model turn after it; `None` without a human turn.
fn sharegpt_turns(
    path: &Path,
    row: &Row,
) -> Result<Option<(String, Option<String>)>, WorkloadError> {
    let turns = row
        .fields
        .get("conversations")
        .and_then(|c| c.as_array())
        .ok_or_else(|| WorkloadError::MissingField {
            path: path.to_path_buf(),
            record: row.label.clone(),
            field: "conversations".into(),
            hint: " (ShareGPT records hold a conversations array of {from, value})".into(),
        })?;
    let role = |t: &serde_json::Value| t["from"].as_str().unwrap_or("").to_ascii_lowercase();
    let value = |t: &serde_json::Value| t["value"].as_str().map(String::from);
    let Some(h) = turns
        .iter()
        .position(|t| matches!(role(t).as_str(), "human" | "user"))
    else {
        return Ok(None);
    };
    let Some(prompt) = value(&turns[h]).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let reference = turns[h + 1..]
        .iter()
        .find(|t| {
            matches!(
                role(t).as_str(),
                "gpt" | "assistant" | "model" | "chatgpt" | "bard"
            )
        })
        .and_then(value);
    Ok(Some((prompt, reference)))
}
