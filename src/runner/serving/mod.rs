//! Runs and sweeps against an OpenAI-compatible server: the prompts sent under a load pattern
//! while the sensors measure, then the record (every answered request with its latencies and its
//! share of the energy) and the serving figures: latency percentiles, the steady state's
//! throughput and energy, goodput, failures by reason and the client's own CPU time.

mod figures;
mod repeat;

use super::grid::Grid;
use super::session::Session;
use super::setup;
use super::summary::{self, Repeat};
use crate::cli::{
    Arrivals, EndpointArg, OutputLengths, RunArgs, RunSettings, ServerArgs, SweepArgs,
};
use crate::ui;
use anyhow::{bail, Context as _};
use figures::Serving;
use repeat::one_repeat;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Instant;
use wattbench_core::{RunConfig, RunStatus, ServerConfig};
use wattbench_openai::api::Sampling;
use wattbench_openai::load::{self, Prompt};
use wattbench_openai::metrics::Targets;
use wattbench_openai::{Endpoint, Load, LoadOptions, Target};
use wattbench_store::Finished;
use wattbench_workload::Tokenizer;

/// How every point talks to the server, from the flags.
struct Driver {
    target: Target,
    sampling: Sampling,
    targets: Targets,
    /// The served model's tokenizer (`--tokenizer`), to count what the server's usage leaves out.
    tokenizer: Option<Tokenizer>,
}

fn driver(s: &ServerArgs, settings: &RunSettings, model: &str) -> anyhow::Result<Driver> {
    let Some(base_url) = s.base_url.clone() else {
        bail!(
            "--engine openai needs --base-url URL: the server, for example http://127.0.0.1:8000"
        );
    };
    if !settings.power.power_limit.is_empty() {
        bail!("--power-limit does not work with --engine openai yet: it runs the embedded engine's points under each limit");
    }
    if !(0.0..=1.0).contains(&s.max_failure_rate) {
        bail!(
            "--max-failure-rate {} is not a share between 0 and 1",
            s.max_failure_rate
        );
    }
    if s.request_rate.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("--request-rate takes positive numbers of requests per second, as in 2,4,8");
    }
    if s.max_concurrency == Some(0) {
        bail!("--max-concurrency must be at least 1");
    }
    setup::check(settings)?;
    let api_key = match &s.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| {
            format!("--api-key-env {var}: the environment variable {var} is not set")
        })?),
        None => std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
    };
    // Token counts come from the server's usage; a tokenizer (the served model's own) counts
    // what a server leaves out, and builds token-exact synthetic prompts.
    let tokenizer = match &settings.data.tokenizer {
        Some(t) => Some(Tokenizer::load(t).context("--tokenizer")?),
        None => None,
    };
    Ok(Driver {
        target: Target {
            base_url,
            model: model.to_string(),
            api_key,
            endpoint: match s.endpoint {
                EndpointArg::Completions => Endpoint::Completions,
                EndpointArg::Chat => Endpoint::Chat,
            },
            stream: !s.no_stream,
            ignore_eos: settings.sampling.ignore_eos,
            timeout: s.request_timeout,
        },
        sampling: Sampling {
            temperature: settings.sampling.temperature,
            top_p: settings.sampling.top_p,
            seed: Some(settings.sampling.seed),
        },
        targets: Targets {
            ttft_s: s.ttft_target.map(|d| d.as_secs_f64()),
            tpot_s: s.tpot_target.map(|d| d.as_secs_f64()),
            e2e_s: s.e2e_target.map(|d| d.as_secs_f64()),
        },
        tokenizer,
    })
}

/// The prompts of `dataset`, each with its `max_tokens`.
fn prompts(
    settings: &RunSettings,
    d: &Driver,
    dataset: &str,
    num_prompts: usize,
    max_new: u32,
) -> anyhow::Result<Vec<Prompt>> {
    crate::prompts::spec(dataset)?;
    let ds = setup::dataset(settings, dataset, num_prompts, d.tokenizer.as_ref())?;
    let mut out = Vec::with_capacity(ds.records.len());
    for r in &ds.records {
        let limit = r.max_new_tokens.unwrap_or(max_new).min(max_new);
        let max_tokens = match (settings.output_lengths, &r.reference) {
            (OutputLengths::Max, _) => limit,
            (OutputLengths::Reference, Some(reference)) => {
                let Some(t) = &d.tokenizer else {
                    bail!("--output-lengths reference counts each reference answer's tokens; pass --tokenizer (the served model's tokenizer.json)");
                };
                (t.count(reference)? as u32).clamp(1, limit)
            }
            (OutputLengths::Reference, None) => {
                bail!("--output-lengths reference needs reference answers, and {dataset} has none")
            }
        };
        out.push(Prompt {
            text: r.prompt.clone(),
            max_tokens,
        });
    }
    Ok(out)
}

/// The loads of a point: one open loop per `--request-rate`, or a closed loop at `concurrency`.
fn loads(s: &ServerArgs, concurrency: usize) -> Vec<Load> {
    if s.request_rate.is_empty() {
        return vec![Load::Closed { concurrency }];
    }
    s.request_rate
        .iter()
        .map(|&rate| Load::Open {
            rate,
            poisson: s.arrivals == Arrivals::Poisson,
            max_concurrency: s.max_concurrency,
        })
        .collect()
}

/// A point's configuration: `setup::config` with the server and its load.
#[allow(clippy::too_many_arguments)]
fn config(
    settings: &RunSettings,
    s: &ServerArgs,
    d: &Driver,
    dataset: &str,
    num_prompts: usize,
    concurrency: usize,
    max_new: u32,
    repeats: usize,
    load: &Load,
) -> RunConfig {
    let mut c = setup::config(
        settings,
        &d.target.model,
        "server",
        &[],
        dataset,
        num_prompts,
        concurrency,
        max_new,
        repeats,
    );
    c.dtype = "server".into();
    c.chat_template = d.target.endpoint == Endpoint::Chat;
    c.tokenizer = settings
        .data
        .tokenizer
        .clone()
        .unwrap_or_else(|| "server usage".into());
    c.server = Some(ServerConfig {
        base_url: d.target.base_url.clone(),
        endpoint: format!("{:?}", s.endpoint).to_lowercase(),
        stream: d.target.stream,
        max_concurrency: load.cap(),
        request_rate: match load {
            Load::Open { rate, .. } => Some(*rate),
            Load::Closed { .. } => None,
        },
        arrivals: format!("{:?}", s.arrivals).to_lowercase(),
    });
    c
}

/// Untimed requests before the first window (closed loop); seconds spent. An error when every
/// one of them failed: the server is not there, or not this model's.
fn warm_up(
    session: &mut Session,
    d: &Driver,
    prompts: &[Prompt],
    concurrency: usize,
    batches: usize,
    seed: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let warm = (batches * concurrency).min(prompts.len());
    if warm == 0 {
        return Ok(0.0);
    }
    eprintln!("warm-up: {warm} requests to {}", d.target.url());
    let opts = LoadOptions {
        load: Load::Closed { concurrency },
        seed,
    };
    let outs = load::run(
        &d.target,
        &prompts[..warm],
        &d.sampling,
        &opts,
        0,
        Instant::now(),
        session.stop_flag(),
        &|_| {},
    );
    if outs.iter().all(|o| !o.ok()) {
        let first = outs.first();
        let why = first.and_then(|o| o.detail.clone()).unwrap_or_default();
        let reason = first
            .and_then(|o| o.failure)
            .map(|f| f.reason())
            .unwrap_or_default();
        bail!(
            "every warm-up request to {} failed ({reason}: {why}); check --base-url, --model and the server",
            d.target.url()
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// What one point left: its repeats with their figures, and whether it failed.
struct Point {
    repeats: Vec<(Repeat, Serving)>,
    /// More requests failed than `--max-failure-rate` allows, or a repeat stopped.
    failed: bool,
}

/// Runs the repeats of `config` that `done` does not hold.
#[allow(clippy::too_many_arguments)]
fn point(
    session: &mut Session,
    d: &Driver,
    config: &RunConfig,
    prompts: &[Prompt],
    opts: &LoadOptions,
    max_failure_rate: f64,
    sweep: Option<String>,
    done: &Finished,
    warmup_s: f64,
) -> Point {
    let key = config.key();
    let mut out = Point {
        repeats: Vec::new(),
        failed: false,
    };
    for repeat in (0..config.repeats).filter(|&r| !done.contains(&key, r)) {
        if session.interrupted() {
            break;
        }
        eprintln!(
            "repeat {}/{}: {} requests to {} ({})",
            repeat + 1,
            config.repeats,
            prompts.len(),
            d.target.url(),
            pattern(&opts.load)
        );
        let (mut record, window, serving) = one_repeat(
            session,
            config,
            &d.target,
            prompts,
            &d.sampling,
            opts,
            &d.targets,
            d.tokenizer.as_ref(),
            repeat,
            warmup_s,
        );
        record.sweep = sweep.clone();
        let failed = serving.summary.requests - serving.summary.succeeded;
        if failed as f64 > max_failure_rate * serving.summary.requests.max(1) as f64 {
            eprintln!(
                "error: {failed} of {} requests failed, more than --max-failure-rate {max_failure_rate}",
                serving.summary.requests
            );
            out.failed = true;
        }
        let stopped = record.status != RunStatus::Complete;
        out.repeats
            .push((session.store_run(record, window), serving));
        if stopped {
            out.failed = true;
            break;
        }
    }
    out
}

fn pattern(load: &Load) -> String {
    match *load {
        Load::Closed { concurrency } => format!("{concurrency} in flight"),
        Load::Open { rate, poisson, .. } => format!(
            "{rate} per second, {}",
            if poisson { "Poisson" } else { "evenly" }
        ),
    }
}

fn report_errors(repeats: &[Repeat]) {
    for r in repeats
        .iter()
        .filter(|r| r.record.status != RunStatus::Complete)
    {
        eprintln!(
            "error: {}",
            r.record.reason.as_deref().unwrap_or("the run stopped")
        );
    }
}

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let s = &args.server;
    let settings = &args.settings;
    let Some(model) = args.model.clone() else {
        bail!("--engine openai needs --model NAME: the model name the server serves (its /v1/models lists them)");
    };
    if !args.gpus.is_empty() || args.tensor_parallel.is_some() {
        bail!("--gpus and --tensor-parallel split the embedded engine; a server places its model itself (measure its GPUs with --devices)");
    }
    let num_prompts = args.num_prompts.unwrap_or(4096);
    let max_new = args.max_new_tokens.unwrap_or(256);
    let repeats = args.repeats.unwrap_or(1);
    let concurrency = s.max_concurrency.unwrap_or(args.batch_size.unwrap_or(64));
    for (flag, v) in [
        ("--num-prompts", num_prompts),
        ("--batch-size", concurrency),
        ("--max-new-tokens", max_new as usize),
        ("--repeats", repeats),
    ] {
        setup::positive(flag, v)?;
    }
    let d = driver(s, settings, &model)?;
    let prompts = prompts(settings, &d, &args.dataset, num_prompts, max_new)?;
    let mut session = Session::open(settings.db.db.as_deref(), &settings.sensor, "server")?;
    let seed = settings.sampling.seed;
    let warmup_s = match warm_up(
        &mut session,
        &d,
        &prompts,
        concurrency,
        settings.warmup,
        seed,
    ) {
        Ok(w) => w,
        Err(e) => {
            session.close();
            return Err(e);
        }
    };
    let mut code = ExitCode::SUCCESS;
    let db = session.db_path.clone();
    let loads = loads(s, concurrency);
    for load in &loads {
        let cfg = config(
            settings,
            s,
            &d,
            &args.dataset,
            num_prompts,
            concurrency,
            max_new,
            repeats,
            load,
        );
        let opts = LoadOptions { load: *load, seed };
        let p = point(
            &mut session,
            &d,
            &cfg,
            &prompts,
            &opts,
            s.max_failure_rate,
            None,
            &Finished::default(),
            warmup_s,
        );
        if p.failed {
            code = ExitCode::from(if session.interrupted() { 130 } else { 1 });
        }
        let (reps, servings): (Vec<Repeat>, Vec<Serving>) = p.repeats.into_iter().unzip();
        if settings.json {
            let mut v = summary::to_json(&reps, &db);
            v["serving"] = Value::Array(servings.iter().map(Serving::json).collect());
            println!("{}", serde_json::to_string(&v)?);
        } else {
            if loads.len() > 1 {
                println!("load: {}", pattern(load));
            }
            println!("{}", summary::to_text(&reps, &db));
            if let Some(last) = servings.last() {
                println!("{}", last.text());
            }
        }
        report_errors(&reps);
        if session.interrupted() {
            code = ExitCode::from(130);
            break;
        }
    }
    session.close();
    Ok(code)
}

/// A sweep against a server: every model, dataset and length, at every concurrency
/// (`--batch-size`) or, with `--request-rate`, at every rate; finished points are skipped, so a
/// stopped sweep resumes.
pub fn sweep(grid: &Grid, args: &SweepArgs) -> anyhow::Result<ExitCode> {
    let s = &args.server;
    let settings = &args.settings;
    if grid.gpus != [1] {
        bail!("--gpus splits the embedded engine over GPUs; a server places its model itself (measure its GPUs with --devices)");
    }
    if args.find_max_batch {
        bail!("--find-max-batch probes the embedded engine; with a server, sweep --batch-size (the concurrency) instead");
    }
    if !s.request_rate.is_empty() && grid.batch_sizes.len() > 1 {
        bail!("with --request-rate the points are rates, capped by --max-concurrency; drop the list of --batch-size");
    }
    let seed = settings.sampling.seed;
    let mut session = Session::open(settings.db.db.as_deref(), &settings.sensor, "server")?;
    let done = session.store.finished_runs()?;
    let sweep_name = Some(grid.name.clone());
    let db = session.db_path.clone();
    let mut rows = Vec::new();
    let mut points_json = Vec::new();
    let mut failures = 0;
    'all: for model in &grid.models {
        let d = driver(s, settings, model)?;
        let mut warmed = false;
        for dataset in &grid.datasets {
            for &max_new in &grid.max_new_tokens {
                let prompts = prompts(settings, &d, dataset, grid.num_prompts, max_new)?;
                for &batch in &grid.batch_sizes {
                    let concurrency = s.max_concurrency.unwrap_or(batch);
                    for load in loads(s, concurrency) {
                        let cfg = config(
                            settings,
                            s,
                            &d,
                            dataset,
                            grid.num_prompts,
                            concurrency,
                            max_new,
                            grid.repeats,
                            &load,
                        );
                        let key = cfg.key();
                        let before = (0..grid.repeats).all(|r| done.contains(&key, r));
                        let mut p = Point {
                            repeats: Vec::new(),
                            failed: false,
                        };
                        if !before {
                            if !warmed {
                                warm_up(
                                    &mut session,
                                    &d,
                                    &prompts,
                                    concurrency,
                                    settings.warmup,
                                    seed,
                                )?;
                                warmed = true;
                            }
                            let opts = LoadOptions { load, seed };
                            p = point(
                                &mut session,
                                &d,
                                &cfg,
                                &prompts,
                                &opts,
                                s.max_failure_rate,
                                sweep_name.clone(),
                                &done,
                                0.0,
                            );
                        }
                        failures += usize::from(p.failed);
                        let (reps, servings): (Vec<Repeat>, Vec<Serving>) =
                            p.repeats.into_iter().unzip();
                        let stats = summary::stats(&reps);
                        let mean = |k: &str| {
                            stats
                                .iter()
                                .find(|(key, _)| *key == k)
                                .and_then(|(_, st)| st.map(|st| st.mean))
                        };
                        let serving = servings.last();
                        let ms = |f: fn(&Serving) -> Option<f64>| {
                            ui::num(serving.and_then(f).map(|v| v * 1e3), 1)
                        };
                        rows.push(vec![
                            model.clone(),
                            dataset.clone(),
                            max_new.to_string(),
                            pattern(&load),
                            if before {
                                "done before".into()
                            } else {
                                reps.last()
                                    .map_or("-".into(), |r| r.record.status.as_str().to_string())
                            },
                            ui::num(mean("tokens_per_s"), 1),
                            ui::num(mean("avg_power_w"), 1),
                            ui::num(mean("j_per_token"), 4),
                            ms(|sv| sv.summary.ttft_s.map(|x| x.p50)),
                            ms(|sv| sv.summary.tpot_s.map(|x| x.p50)),
                            serving.map_or("-".into(), |sv| {
                                (sv.summary.requests - sv.summary.succeeded).to_string()
                            }),
                        ]);
                        let mut v = summary::to_json(&reps, &db);
                        v["point"] = json!({ "model": model, "dataset": dataset, "max_new_tokens": max_new,
                            "max_concurrency": load.cap(), "request_rate": match load { Load::Open { rate, .. } => Some(rate), _ => None } });
                        v["skipped"] = json!(before);
                        v["serving"] = Value::Array(servings.iter().map(Serving::json).collect());
                        points_json.push(v);
                        report_errors(&reps);
                        if session.interrupted() {
                            eprintln!("interrupted: rerun the same command to finish the sweep");
                            break 'all;
                        }
                    }
                }
            }
        }
    }
    let interrupted = session.interrupted();
    session.close();
    if settings.json {
        println!(
            "{}",
            json!({ "sweep": grid.name, "points": points_json, "db": db })
        );
    } else {
        println!(
            "sweep {}\n\n{}\n\nstored in {} (rerun the same command to resume)",
            grid.name,
            ui::table(
                &[
                    "model",
                    "dataset",
                    "max new",
                    "load",
                    "status",
                    "tok/s",
                    "W",
                    "J/token",
                    "TTFT p50 ms",
                    "TPOT p50 ms",
                    "failed"
                ],
                &rows,
                2
            ),
            db.display()
        );
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
