//! The points of a sweep: lists from flags, a TOML file or a preset, checked and crossed.

use crate::cli::{Preset, SweepArgs};
use anyhow::{bail, Context as _};
use serde::Deserialize;
use std::path::Path;

/// A sweep file. Every key is optional; flags may not set a list the file sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub name: Option<String>,
    pub model: Option<Vec<String>>,
    pub dataset: Option<Vec<String>>,
    pub batch_size: Option<Vec<usize>>,
    pub max_new_tokens: Option<Vec<u32>>,
    /// Shard counts: each model split over 1, 2, 4... GPUs.
    pub gpus: Option<Vec<usize>>,
    /// GPU power limits: "250W", "175W" or shares of the default limit, "70%".
    pub power_limit: Option<Vec<String>>,
    pub num_prompts: Option<usize>,
    pub repeats: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub name: String,
    pub models: Vec<String>,
    pub datasets: Vec<String>,
    /// Ascending: a batch that does not fit makes every larger one infeasible.
    pub batch_sizes: Vec<usize>,
    pub max_new_tokens: Vec<u32>,
    /// Shard counts, ascending.
    pub gpus: Vec<usize>,
    pub num_prompts: usize,
    pub repeats: usize,
    /// GPU power limits as given (none: limits stay as they are).
    pub power_limits: Vec<String>,
}

/// How errors name a preset's lists, which flags may replace.
const PRESET: &str = "--preset";

/// One point: (model, dataset, max_new_tokens, batch size).
pub type Point<'a> = (&'a str, &'a str, u32, usize);

impl Grid {
    /// Points grouped so that each model loads once; within a model and dataset, lengths
    /// ascending, then batch sizes ascending.
    pub fn points(&self) -> Vec<Point<'_>> {
        let mut out = Vec::new();
        for m in &self.models {
            for d in &self.datasets {
                for &n in &self.max_new_tokens {
                    for &b in &self.batch_sizes {
                        out.push((m.as_str(), d.as_str(), n, b));
                    }
                }
            }
        }
        out
    }
}

fn preset(p: Preset) -> SweepFile {
    match p {
        Preset::WordsToWatts => SweepFile {
            name: Some("words-to-watts".into()),
            model: Some(
                ["llama-7b", "llama-13b", "llama-65b"]
                    .map(|m| format!("synthetic:{m}"))
                    .to_vec(),
            ),
            dataset: Some(vec!["alpaca".into(), "gsm8k".into()]),
            batch_size: Some(vec![64, 128, 256, 512]),
            max_new_tokens: Some(vec![256, 512, 1024]),
            gpus: None,
            power_limit: None,
            num_prompts: Some(4096),
            repeats: Some(1),
        },
    }
}

fn read(path: &Path) -> anyhow::Result<SweepFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the sweep file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the sweep file {} is not valid: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })
}

/// One list from a flag or the file (never both; a preset's lists yield to flags), else
/// `default`; never empty.
fn pick<T: Clone>(
    flag: &str,
    key: &str,
    from_flag: &[T],
    from_file: Option<Vec<T>>,
    source: &str,
    default: Option<Vec<T>>,
) -> anyhow::Result<Vec<T>> {
    let from_file = from_file.filter(|_| source != PRESET || from_flag.is_empty());
    match (from_flag.is_empty(), from_file) {
        (false, Some(_)) => bail!("{flag} and {source} both set {key}; give one of them"),
        (false, None) => Ok(from_flag.to_vec()),
        (true, Some(v)) if v.is_empty() => bail!("{source}: {key} is an empty list; list at least one value"),
        (true, Some(v)) => Ok(v),
        (true, None) => default.ok_or_else(|| {
            anyhow::anyhow!("a sweep needs {key}: give {flag} A,B, {key} = [...] in --config, or --preset words-to-watts")
        }),
    }
}

/// `--dataset` is split at commas, and so are the settings of a synthetic dataset
/// (`synthetic:in=128,out=256`): a piece that is a bare `key=value` belongs to the dataset before it.
fn rejoin(list: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in list {
        let setting = item.contains('=') && !item.contains(':');
        match out.last_mut() {
            Some(prev) if setting && prev.starts_with("synthetic:") => {
                prev.push(',');
                prev.push_str(item);
            }
            _ => out.push(item.clone()),
        }
    }
    out
}

/// The grid of `args`, or the error that names the flag or the file's line.
pub fn grid(args: &SweepArgs) -> anyhow::Result<Grid> {
    if args.preset.is_some() && args.config.is_some() {
        bail!("--preset and --config both define the grid; give one of them");
    }
    if args.find_max_batch && !args.batch_size.is_empty() {
        bail!("--find-max-batch searches the batch size itself; drop --batch-size");
    }
    let (file, source) = match (&args.config, args.preset) {
        (Some(p), _) => (read(p)?, format!("the sweep file {}", p.display())),
        (None, Some(p)) => (preset(p), PRESET.to_string()),
        (None, None) => (SweepFile::default(), String::new()),
    };
    let models = pick("--model", "model", &args.model, file.model, &source, None)?;
    let datasets = pick(
        "--dataset",
        "dataset",
        &rejoin(&args.dataset),
        file.dataset,
        &source,
        Some(vec!["gsm8k".into()]),
    )?;
    let mut batch_sizes = pick(
        "--batch-size",
        "batch_size",
        &args.batch_size,
        file.batch_size,
        &source,
        Some(vec![64]),
    )?;
    let mut max_new_tokens = pick(
        "--max-new-tokens",
        "max_new_tokens",
        &args.max_new_tokens,
        file.max_new_tokens,
        &source,
        Some(vec![256]),
    )?;
    let mut gpus = pick(
        "--gpus",
        "gpus",
        &args.gpus,
        file.gpus,
        &source,
        Some(vec![1]),
    )?;
    let power_limits = pick(
        "--power-limit",
        "power_limit",
        &args.settings.power.power_limit,
        file.power_limit,
        &source,
        Some(Vec::new()),
    )?;
    if gpus.contains(&0) {
        bail!("shard counts (--gpus) must be at least 1");
    }
    gpus.sort_unstable();
    gpus.dedup();
    for list in [&models, &datasets] {
        if list.iter().any(|s| s.trim().is_empty()) {
            bail!("an empty name in the list {list:?}; remove it");
        }
    }
    if batch_sizes.contains(&0) || max_new_tokens.contains(&0) {
        bail!("batch sizes and lengths must be at least 1");
    }
    batch_sizes.sort_unstable();
    batch_sizes.dedup();
    max_new_tokens.sort_unstable();
    max_new_tokens.dedup();
    let preset = source == PRESET;
    let num_prompts = match (args.num_prompts, file.num_prompts) {
        (Some(_), Some(_)) if !preset => {
            bail!("--num-prompts and {source} both set num_prompts; give one of them")
        }
        (a, b) => a.or(b).unwrap_or(4096),
    };
    let repeats = match (args.repeats, file.repeats) {
        (Some(_), Some(_)) if !preset => {
            bail!("--repeats and {source} both set repeats; give one of them")
        }
        (a, b) => a.or(b).unwrap_or(1),
    };
    if num_prompts == 0 || repeats == 0 {
        bail!("num_prompts and repeats must be at least 1");
    }
    let mut grid = Grid {
        name: String::new(),
        models,
        datasets,
        batch_sizes,
        max_new_tokens,
        gpus,
        num_prompts,
        repeats,
        power_limits,
    };
    grid.name = match (&args.name, file.name) {
        (Some(n), _) => n.clone(),
        (None, Some(n)) => n,
        (None, None) => {
            // Grids without power limits keep the names they had before limits were an axis.
            let text = format!("{grid:?}").replace(", power_limits: []", "");
            let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("sweep-{:08x}", h >> 32)
        }
    };
    Ok(grid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn sweep(args: &[&str]) -> SweepArgs {
        let all: Vec<&str> = ["wattbench", "sweep"].iter().chain(args).copied().collect();
        match Cli::try_parse_from(all).unwrap().command {
            Command::Sweep(a) => a,
            _ => unreachable!("a sweep command parses as a sweep"),
        }
    }

    #[test]
    fn flags_replace_a_presets_lists_and_the_grid_is_ordered() {
        let g = grid(&sweep(&[
            "--preset",
            "words-to-watts",
            "--num-prompts",
            "512",
            "--batch-size",
            "128,64,128",
        ]))
        .unwrap();
        assert_eq!(g.models.len(), 3);
        assert_eq!((g.num_prompts, g.batch_sizes.clone()), (512, vec![64, 128]));
        assert_eq!(g.max_new_tokens, [256, 512, 1024]);
        assert_eq!(g.gpus, [1]);
        let synthetic = grid(&sweep(&[
            "--model",
            "synthetic:tiny",
            "--dataset",
            "gsm8k,synthetic:in=128,out=256,alpaca,synthetic:in=8,out=4,dist=normal",
        ]))
        .unwrap();
        assert_eq!(
            synthetic.datasets,
            [
                "gsm8k",
                "synthetic:in=128,out=256",
                "alpaca",
                "synthetic:in=8,out=4,dist=normal"
            ]
        );
        let shards = grid(&sweep(&["--model", "synthetic:tiny", "--gpus", "4,1,2"])).unwrap();
        assert_eq!(shards.gpus, [1, 2, 4]);
        assert_eq!(g.name, "words-to-watts");
        let p = g.points();
        assert_eq!(p.len(), 3 * 2 * 3 * 2);
        assert_eq!(p[0], ("synthetic:llama-7b", "alpaca", 256, 64));
        assert_eq!(p[1], ("synthetic:llama-7b", "alpaca", 256, 128));
    }

    #[test]
    fn an_unnamed_grid_gets_a_stable_name() {
        let a = grid(&sweep(&[
            "--model",
            "synthetic:tiny",
            "--batch-size",
            "2,4",
        ]))
        .unwrap();
        let b = grid(&sweep(&[
            "--batch-size",
            "4,2",
            "--model",
            "synthetic:tiny",
        ]))
        .unwrap();
        assert_eq!(a.name, b.name);
        assert!(a.name.starts_with("sweep-"));
    }
}
