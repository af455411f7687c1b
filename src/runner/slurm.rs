//! A sweep as a Slurm job array: the grid is cut into tasks (every point of one model and shard
//! count, so that each model loads once, or one point each), and each task of the array runs
//! `wattbench sweep` with the same arguments on its own part, writing its own database under a
//! shared results folder. `wattbench merge` joins them afterwards. The scheduler is the
//! cluster's own: wattbench only writes the batch script and hands it to `sbatch`.

use crate::cli::{SlurmTasks, SweepArgs};
use crate::runner::grid::Grid;
use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The grids of the tasks, in task order.
pub fn tasks(grid: &Grid, by: SlurmTasks) -> Vec<Grid> {
    let mut out = Vec::new();
    for m in &grid.models {
        for &g in &grid.gpus {
            let one = Grid {
                models: vec![m.clone()],
                gpus: vec![g],
                ..grid.clone()
            };
            match by {
                SlurmTasks::Model => out.push(one),
                SlurmTasks::Point => {
                    for (_, d, n, b) in one.points() {
                        out.push(Grid {
                            datasets: vec![d.to_string()],
                            max_new_tokens: vec![n],
                            batch_sizes: vec![b],
                            ..one.clone()
                        });
                    }
                }
            }
        }
    }
    out
}

/// The part of `grid` that task `task` runs.
pub fn restrict(grid: Grid, task: usize, by: SlurmTasks) -> anyhow::Result<Grid> {
    let mut all = tasks(&grid, by);
    if task >= all.len() {
        bail!(
            "--task {task}: this sweep has {} task(s) (0 to {}); was the batch script written for other arguments?",
            all.len(),
            all.len().saturating_sub(1)
        );
    }
    Ok(all.swap_remove(task))
}

/// Single-quotes `s` for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Flags of the submitting command that the tasks must not repeat, and whether each takes a value.
const OWN_FLAGS: &[(&str, bool)] = &[
    ("--slurm", false),
    ("--dry-run", false),
    ("--partition", true),
    ("--gpus-per-node", true),
    ("--time", true),
    ("--account", true),
    ("--slurm-tasks", true),
    ("--results", true),
    ("--task", true),
    ("--tasks-by", true),
    ("--db", true),
];

/// The sweep's own arguments (after the program name) without the Slurm flags and `--db`.
fn task_args(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, _)) if n.starts_with("--") => (n, true),
            _ => (a.as_str(), false),
        };
        match OWN_FLAGS.iter().find(|(f, _)| *f == name) {
            Some((_, true)) if !inline => {
                it.next();
            }
            Some(_) => {}
            None => out.push(a.clone()),
        }
    }
    out
}

fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').chars().take(60).collect()
}

/// The batch script of the array.
#[allow(clippy::too_many_arguments)]
fn script(
    grid: &Grid,
    args: &SweepArgs,
    tasks: usize,
    exe: &Path,
    cwd: &Path,
    results: &Path,
    gpus: Option<u32>,
    sweep_args: &[String],
) -> String {
    let s = &args.slurm;
    let by = match s.slurm_tasks {
        SlurmTasks::Model => "model",
        SlurmTasks::Point => "point",
    };
    let mut out = String::from("#!/bin/bash\n");
    let mut directive = |k: &str, v: &str| out.push_str(&format!("#SBATCH --{k}={v}\n"));
    directive("job-name", &format!("wattbench-{}", slug(&grid.name)));
    directive("array", &format!("0-{}", tasks - 1));
    directive("chdir", &cwd.display().to_string());
    directive(
        "output",
        &results.join("logs").join("%A_%a.out").display().to_string(),
    );
    directive("nodes", "1");
    directive("ntasks", "1");
    if let Some(p) = &s.partition {
        directive("partition", p);
    }
    if let Some(g) = gpus {
        directive("gpus-per-node", &g.to_string());
    }
    if let Some(t) = &s.time {
        directive("time", t);
    }
    if let Some(a) = &s.account {
        directive("account", a);
    }
    let db = results.join("task-");
    out.push_str(&format!(
        "# wattbench sweep \"{}\": {tasks} task(s), one per {by}; task N writes {}N.db.\n\
         # When the array has finished: wattbench merge {} && wattbench report --db {}\n\
         set -euo pipefail\n\
         exec {} {} --task \"$SLURM_ARRAY_TASK_ID\" --tasks-by {by} --db {}\"$SLURM_ARRAY_TASK_ID.db\"\n",
        grid.name,
        db.display(),
        quote(&results.display().to_string()),
        quote(&results.join("merged.db").display().to_string()),
        quote(&exe.display().to_string()),
        sweep_args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        quote(&db.display().to_string()),
    ));
    out
}

/// Writes the batch script under the results folder and submits it (or, with `--dry-run`, prints it).
pub fn submit(grid: &Grid, args: &SweepArgs, device: &str) -> anyhow::Result<ExitCode> {
    let s = &args.slurm;
    let all = tasks(grid, s.slurm_tasks);
    if all.is_empty() {
        bail!("the sweep has no points to submit");
    }
    let cwd = std::env::current_dir().context("the current folder")?;
    let results: PathBuf = cwd.join(
        s.results
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("wattbench-{}", slug(&grid.name)))),
    );
    std::fs::create_dir_all(results.join("logs")).with_context(|| {
        format!(
            "creating the results folder {}; pass --results DIR on a filesystem every node shares",
            results.display()
        )
    })?;
    let exe = std::env::current_exe().context("finding the wattbench executable")?;
    let gpus = s.gpus_per_node.or_else(|| {
        device
            .starts_with("cuda")
            .then(|| grid.gpus.iter().copied().max().unwrap_or(1) as u32)
    });
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let text = script(
        grid,
        args,
        all.len(),
        &exe,
        &cwd,
        &results,
        gpus,
        &task_args(&argv),
    );
    let path = results.join("sweep.sbatch");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    if args.settings.power.dry_run {
        print!("{text}");
        eprintln!(
            "wrote {} ({} task(s)); submit it with `sbatch {}`",
            path.display(),
            all.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = match Command::new("sbatch").arg("--parsable").arg(&path).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "sbatch was not found on PATH: run this on a Slurm login node, or pass --dry-run to only write the batch script ({})",
            path.display()
        ),
        Err(e) => return Err(e).context("running sbatch"),
    };
    if !out.status.success() {
        bail!(
            "sbatch refused {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let job = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    if args.settings.json {
        println!(
            "{}",
            serde_json::json!({
                "job_id": job, "tasks": all.len(), "results": results, "script": path,
            })
        );
    }
    eprintln!(
        "submitted job array {job} ({} task(s)) from {}; follow it with `squeue -j {job}`; when it ends: \
         `wattbench merge {}` then `wattbench report --db {}`",
        all.len(),
        path.display(),
        results.display(),
        results.join("merged.db").display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tasks_repeat_the_sweep_without_the_submission_flags() {
        let argv: Vec<String> = [
            "sweep",
            "--slurm",
            "--partition",
            "gpu",
            "--model",
            "a,b",
            "--time=1:00:00",
            "--db",
            "x.db",
            "--dry-run",
            "--results",
            "r",
            "--batch-size",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            task_args(&argv),
            ["sweep", "--model", "a,b", "--batch-size", "4"]
        );
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
