//! `wattbench merge DIR`: the databases of a folder merged into one (by default DIR/merged.db),
//! skipping runs and measurements already there, so that `wattbench report` sees a whole sweep
//! that ran as separate tasks.

use crate::cli::MergeArgs;
use anyhow::{bail, Context as _};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wattbench_store::{MergeCount, Store};

/// Every `*.db` under `dir`, sorted by path, except `skip`.
fn databases(dir: &Path, skip: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "db")
                && path.canonicalize().ok() != skip.canonicalize().ok()
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn run(args: MergeArgs) -> anyhow::Result<ExitCode> {
    if !args.dir.is_dir() {
        bail!(
            "{} is not a folder; give the folder that holds the databases (a Slurm sweep's --results)",
            args.dir.display()
        );
    }
    let target = args
        .db
        .clone()
        .unwrap_or_else(|| args.dir.join("merged.db"));
    let sources = databases(&args.dir, &target)?;
    if sources.is_empty() {
        bail!(
            "no *.db file under {}; the tasks write task-N.db there when they run",
            args.dir.display()
        );
    }
    let mut store = Store::open(&target)?;
    let mut total = MergeCount::default();
    let mut each = Vec::new();
    for src in &sources {
        let c = store
            .merge_from(src)
            .with_context(|| format!("merging {}", src.display()))?;
        if !args.json {
            eprintln!(
                "{}: {} run(s) added, {} already there; {} measurement(s) added, {} already there",
                src.display(),
                c.runs_added,
                c.runs_skipped,
                c.measurements_added,
                c.measurements_skipped
            );
        }
        each.push(json!({ "source": src, "count": c }));
        total += c;
    }
    if args.json {
        println!(
            "{}",
            json!({ "db": target, "sources": each, "total": total })
        );
    } else {
        eprintln!(
            "merged {} database(s) into {}: {} run(s) added; report it with `wattbench report --db {}`",
            sources.len(),
            target.display(),
            total.runs_added,
            target.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
