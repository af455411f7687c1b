//! `wattbench sweep`: the cross product of models, datasets, lengths and batch sizes, one model
//! load per model, every point stored as it ends; rerun, it skips what is done.

use crate::cli::{EngineKind, SweepArgs};
use crate::runner::caps::{self, Caps};
use crate::runner::execute::infeasible;
use crate::runner::grid::{self, Grid, Point};
use crate::runner::maxbatch;
use crate::runner::plan::{self, ModelLimits};
use crate::runner::session::{resolve_device, Session};
use crate::runner::setup;
use crate::runner::slurm;
use crate::runner::summary::{self, Repeat};
use crate::ui;
use anyhow::{bail, Context as _};
use serde_json::json;
use std::process::ExitCode;
use wattbench_core::{PowerCap, RunConfig, RunStatus};
use wattbench_engine::{EngineError, GenerationParams, ModelSpec};

/// The bytes of a model's weights, where its shape is known before loading (synthetic models).
fn weight_bytes(model: &str, dtype: &str) -> Option<u64> {
    let cfg = ModelSpec::parse(model).ok()?.known_config()?;
    let size = if dtype == "f32" { 4 } else { 2 };
    Some(cfg.parameters() * size)
}

pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let mut grid = grid::grid(&args)?;
    if args.slurm.slurm {
        if args.server.engine == EngineKind::Embedded {
            for m in &grid.models {
                ModelSpec::parse(m)?;
            }
        }
        for d in &grid.datasets {
            crate::prompts::spec(d)?;
        }
        return slurm::submit(&grid, &args, &resolve_device(&args.settings.device));
    }
    if let Some(task) = args.slurm.task {
        grid = slurm::restrict(grid, task, args.slurm.tasks_by)?;
    }
    if args.server.engine == EngineKind::Openai {
        return crate::runner::serving::sweep(&grid, &args);
    }
    crate::commands::run::refuse_server_flags(&args.server)?;
    let settings = &args.settings;
    setup::check(settings)?;
    for d in &grid.datasets {
        setup::check_score(settings, d)?;
        crate::prompts::spec(d)?;
    }
    for m in &grid.models {
        ModelSpec::parse(m)?;
    }
    let device = resolve_device(&settings.device);
    if grid.gpus.iter().any(|&g| g > 1) && !device.starts_with("cuda") {
        bail!("--gpus {:?} splits models over GPUs, and this sweep is on {device}; pass --device cuda", grid.gpus);
    }
    if args.preset.is_some() && !device.starts_with("cuda") {
        bail!("--preset words-to-watts is sized for GPUs, and this run is on {device}; pass --device cuda (with a CUDA build), or give the lists yourself");
    }
    // Every dataset that needs no tokenizer is loaded once now, so that a missing file or too few
    // prompts fail before any model loads.
    for d in grid.datasets.iter().filter(|d| !d.starts_with("synthetic")) {
        setup::dataset(settings, d, grid.num_prompts, None)?;
    }
    // The sensors cover every GPU a point may use; each point counts only its own.
    let most = grid.gpus.iter().copied().max().unwrap_or(1);
    let sensed = if most > 1 {
        let list: Vec<String> = (0..most).map(|i| i.to_string()).collect();
        format!("cuda:{}", list.join(","))
    } else {
        device.clone()
    };
    if args.find_max_batch && !grid.power_limits.is_empty() {
        bail!("--find-max-batch measures no energy, and power limits do not change what fits; drop --power-limit");
    }
    let mut caps = Caps::prepare(&settings.power, &grid.power_limits, &caps::gpus_of(&sensed))?;
    if let (Some(c), true) = (&caps, settings.power.dry_run) {
        println!("{}", c.describe());
        return Ok(ExitCode::SUCCESS);
    }
    let mut session = Session::open(settings.db.db.as_deref(), &settings.sensor, &sensed)?;
    let result = if args.find_max_batch {
        find_max_batch(&grid, &args, &device)
    } else {
        sweep(&grid, &args, &device, &mut session, &mut caps)
    };
    // The limits go back before the sensors stop.
    drop(caps);
    let interrupted = session.interrupted();
    session.close();
    let code = result?;
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        code
    })
}

fn sweep(
    grid: &Grid,
    args: &SweepArgs,
    device: &str,
    session: &mut Session,
    caps: &mut Option<Caps>,
) -> anyhow::Result<ExitCode> {
    let settings = &args.settings;
    let done = session.store.finished_runs()?;
    let memory = wattbench_engine::device::parse_device(device)
        .ok()
        .and_then(|d| wattbench_engine::device::memory_bytes(&d));
    // GPUs 0..g of a point on g GPUs, and its device: `device` for one GPU, `cuda:0,1,..` else.
    let on = |g: usize| -> (Vec<usize>, String) {
        if g > 1 {
            let list: Vec<String> = (0..g).map(|i| i.to_string()).collect();
            ((0..g).collect(), format!("cuda:{}", list.join(",")))
        } else {
            (Vec::new(), device.to_string())
        }
    };
    // The power limits of the sweep (index into `limits`), or one entry for limits left alone.
    let limits: Vec<Option<PowerCap>> = caps
        .as_ref()
        .map_or(vec![None], |c| c.configs().into_iter().map(Some).collect());
    let config = |g: usize, k: usize, m: &str, d: &str, n: u32, b: usize| {
        let (gpus, dev) = on(g);
        RunConfig {
            power_limit: limits[k].clone(),
            ..setup::config(
                settings,
                m,
                &dev,
                &gpus,
                d,
                grid.num_prompts,
                b,
                n,
                grid.repeats,
            )
        }
    };
    let all_done = |g: usize, k: usize, p: &Point| {
        let key = config(g, k, p.0, p.1, p.2, p.3).key();
        (0..grid.repeats).all(|r| done.contains(&key, r))
    };
    let row = |g: usize, k: usize, p: &Point, repeats: Vec<Repeat>, before: bool| PointRow {
        model: p.0.into(),
        gpus: g,
        limit: limits[k].as_ref().map(|l| l.requested.clone()),
        dataset: p.1.into(),
        max_new: p.2,
        batch: p.3,
        repeats,
        done_before: before,
    };
    let mut points: Vec<PointRow> = Vec::new();
    let mut failures = 0;
    let sweep_name = Some(grid.name.clone());
    'models: for (model, g) in grid
        .models
        .iter()
        .flat_map(|m| grid.gpus.iter().map(move |&g| (m, g)))
    {
        // Within a model: power limits outermost (each set once), then the grid's points.
        let mine: Vec<(usize, Point)> = (0..limits.len())
            .flat_map(|k| {
                grid.points()
                    .into_iter()
                    .filter(|p| p.0 == model)
                    .map(move |p| (k, p))
            })
            .collect();
        let todo: Vec<&(usize, Point)> = mine.iter().filter(|(k, p)| !all_done(g, *k, p)).collect();
        for (k, p) in mine.iter().filter(|(k, p)| all_done(g, *k, p)) {
            points.push(row(g, *k, p, Vec::new(), true));
        }
        if todo.is_empty() {
            continue;
        }
        let (gpus, dev) = on(g);
        let dtype = config(g, 0, model, "", 1, 1).dtype;
        if let (Some(w), Some(mem)) = (weight_bytes(model, &dtype), memory) {
            if w as f64 > 0.95 * mem as f64 * g as f64 {
                let reason = format!(
                    "the weights alone take {:.1} GB in {dtype} and {g} GPU(s) of {:.1} GB do not hold them; shard the model over more GPUs",
                    w as f64 / 1e9,
                    mem as f64 / 1e9
                );
                for (k, p) in todo {
                    let r = session.record_infeasible(
                        &config(g, *k, p.0, p.1, p.2, p.3),
                        sweep_name.clone(),
                        reason.clone(),
                        Vec::new(),
                    );
                    points.push(row(g, *k, p, vec![r], false));
                }
                continue;
            }
        }
        eprintln!("loading {model} on {dev}");
        let (loaded, tokenizer) = match setup::model(settings, model, &dev, &gpus) {
            Ok(m) => m,
            Err(e)
                if e.downcast_ref::<EngineError>()
                    .is_some_and(EngineError::is_out_of_memory) =>
            {
                for (k, p) in todo {
                    let r = session.record_infeasible(
                        &config(g, *k, p.0, p.1, p.2, p.3),
                        sweep_name.clone(),
                        format!("loading the model: {e}"),
                        Vec::new(),
                    );
                    points.push(row(g, *k, p, vec![r], false));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut datasets = std::collections::HashMap::new();
        // The smallest batch that could not run, and why, per (dataset, length); power limits
        // do not change what fits.
        let mut too_big: std::collections::HashMap<(String, u32), (usize, String)> =
            Default::default();
        let mut applied = None;
        for (k, p) in todo {
            let (k, (m, d, n, b)) = (*k, *p);
            let cfg = config(g, k, m, d, n, b);
            if let Some((small, why)) = too_big.get(&(d.to_string(), n)) {
                let r = session.record_infeasible(
                    &cfg,
                    sweep_name.clone(),
                    format!("batch {small} could not run either ({why})"),
                    Vec::new(),
                );
                points.push(row(g, k, p, vec![r], false));
                continue;
            }
            if let (Some(c), Some(l)) = (caps.as_mut(), &limits[k]) {
                if applied != Some(k) {
                    c.apply(k)
                        .with_context(|| format!("setting the power limit {}", l.requested))?;
                    eprintln!("power limit {} on GPU(s) {:?}", l.requested, l.gpus);
                    applied = Some(k);
                }
            }
            if !datasets.contains_key(d) {
                datasets.insert(
                    d.to_string(),
                    setup::dataset(settings, d, grid.num_prompts, Some(&tokenizer))?,
                );
            }
            match &limits[k] {
                Some(l) => eprintln!(
                    "{m} · {dev} · {} · {d} · {n} new tokens · batch {b}",
                    l.requested
                ),
                None => eprintln!("{m} · {dev} · {d} · {n} new tokens · batch {b}"),
            }
            let result = session.run_point(
                &loaded,
                &tokenizer,
                &cfg,
                &datasets[d],
                settings.score,
                sweep_name.clone(),
                &done,
            )?;
            if let Some(r) = result
                .repeats
                .iter()
                .find(|r| r.record.status == RunStatus::Infeasible)
            {
                let why = r.record.reason.clone().unwrap_or_default();
                too_big.insert((d.to_string(), n), (b, why));
            }
            if let Some(e) = &result.failure {
                let engine = e.downcast_ref::<EngineError>();
                if !engine.is_some_and(infeasible) && e.downcast_ref::<plan::TooLong>().is_none() {
                    failures += 1;
                    eprintln!("error: {m} · {d} · {n} · batch {b}: {e:#}");
                }
            }
            points.push(row(g, k, p, result.repeats, false));
            if session.interrupted() {
                eprintln!("interrupted: rerun the same command to finish the sweep");
                break 'models;
            }
        }
    }
    print_sweep(grid, &points, &session.db_path, settings.json)?;
    Ok(if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A point of the sweep as shown: what it is, its repeats run now, and whether it was done
/// before this sweep.
struct PointRow {
    model: String,
    gpus: usize,
    /// The power limit as asked for, where the sweep sets them.
    limit: Option<String>,
    dataset: String,
    max_new: u32,
    batch: usize,
    repeats: Vec<Repeat>,
    done_before: bool,
}

fn print_sweep(
    grid: &Grid,
    points: &[PointRow],
    db: &std::path::Path,
    as_json: bool,
) -> anyhow::Result<()> {
    if as_json {
        let list: Vec<_> = points
            .iter()
            .map(|p| {
                let mut v = summary::to_json(&p.repeats, db);
                if let Some(o) = v.as_object_mut() {
                    let mut point = json!({ "model": p.model, "gpus": p.gpus, "dataset": p.dataset, "max_new_tokens": p.max_new, "batch_size": p.batch });
                    if let Some(l) = &p.limit {
                        point["power_limit"] = json!(l);
                    }
                    o.insert("point".into(), point);
                    o.insert("skipped".into(), json!(p.done_before));
                }
                v
            })
            .collect();
        println!(
            "{}",
            json!({ "sweep": grid.name, "points": list, "db": db })
        );
        return Ok(());
    }
    let with_limits = points.iter().any(|p| p.limit.is_some());
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            let status = if p.done_before {
                "done before".to_string()
            } else {
                p.repeats
                    .last()
                    .map_or("-".into(), |r| r.record.status.as_str().to_string())
            };
            // The same means over complete repeats that `run` shows.
            let stats = summary::stats(&p.repeats);
            let mean = |key: &str| {
                stats
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, s)| s.map(|s| s.mean))
            };
            let mut row = vec![p.model.clone(), p.gpus.to_string()];
            if with_limits {
                row.push(p.limit.clone().unwrap_or_default());
            }
            row.extend([
                p.dataset.clone(),
                p.max_new.to_string(),
                p.batch.to_string(),
                status,
                ui::num(mean("tokens_per_s"), 1),
                ui::num(mean("avg_power_w"), 1),
                ui::num(mean("j_per_token"), 4),
                ui::num(mean("j_per_response"), 2),
            ]);
            row
        })
        .collect();
    let mut header = vec!["model", "GPUs"];
    if with_limits {
        header.push("power limit");
    }
    header.extend([
        "dataset",
        "max new",
        "batch",
        "status",
        "tok/s",
        "W",
        "J/token",
        "J/response",
    ]);
    println!(
        "sweep {}\n\n{}\n\nstored in {} (rerun the same command to resume; `wattbench report` draws the figures)",
        grid.name,
        ui::table(&header, &rows, if with_limits { 2 } else { 1 }),
        db.display()
    );
    for p in points {
        for r in p
            .repeats
            .iter()
            .filter(|r| r.record.status != RunStatus::Complete)
        {
            let limit = p
                .limit
                .as_ref()
                .map(|l| format!(" · {l}"))
                .unwrap_or_default();
            println!(
                "  {} · {} GPU(s){limit} · {} · {} · batch {}: {} ({})",
                p.model,
                p.gpus,
                p.dataset,
                p.max_new,
                p.batch,
                r.record.status.as_str(),
                r.record.reason.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn find_max_batch(grid: &Grid, args: &SweepArgs, device: &str) -> anyhow::Result<ExitCode> {
    let settings = &args.settings;
    let mut rows = Vec::new();
    let mut found = Vec::new();
    for model in &grid.models {
        eprintln!("loading {model} on {device}");
        let (loaded, tokenizer) = setup::model(settings, model, device, &[])?;
        let limits = ModelLimits {
            vocab: loaded.model.cfg.vocab_size,
            context: loaded.model.cfg.max_position_embeddings,
            synthetic: loaded.synthetic,
        };
        let params = GenerationParams {
            temperature: settings.sampling.temperature,
            top_p: settings.sampling.top_p,
            seed: settings.sampling.seed,
            ignore_eos: true,
            eos_ids: vec![],
        };
        for d in &grid.datasets {
            let ds = setup::dataset(settings, d, grid.num_prompts, Some(&tokenizer))?;
            for &n in &grid.max_new_tokens {
                let cfg = setup::config(settings, model, device, &[], d, grid.num_prompts, 1, n, 1);
                let plan = plan::plan(&ds, &tokenizer, &cfg, &limits)?;
                let s = maxbatch::search(&loaded, model, &plan, &params, grid.num_prompts)?;
                rows.push(vec![
                    model.clone(),
                    d.clone(),
                    n.to_string(),
                    if s.hit_limit {
                        format!("≥ {}", s.max_batch)
                    } else {
                        s.max_batch.to_string()
                    },
                    s.probes
                        .iter()
                        .map(|(b, ok)| format!("{b}{}", if *ok { "" } else { "✗" }))
                        .collect::<Vec<_>>()
                        .join(" "),
                ]);
                found.push(json!({ "model": model, "dataset": d, "max_new_tokens": n, "max_batch": s.max_batch, "hit_limit": s.hit_limit, "probes": s.probes }));
            }
        }
    }
    if settings.json {
        println!("{}", json!({ "device": device, "max_batch": found }));
    } else {
        println!(
            "{}\n\n(each probe allocates the full cache for the longest prompts, prefills them and decodes one step; ✗: out of memory; the search stops at --num-prompts)",
            ui::table(&["model", "dataset", "max new", "max batch", "probes"], &rows, 2)
        );
    }
    Ok(ExitCode::SUCCESS)
}
