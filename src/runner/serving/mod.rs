//! Runs against an OpenAI-compatible server: the prompts sent under a load pattern while the
//! sensors measure, then the record (every answered request with its latencies and its share of
//! the energy) and the serving figures: latency percentiles, the steady state's throughput and
//! energy, goodput, failures by reason and the client's own CPU time.
mod figures;
mod repeat;

use super::session::Session;
use super::setup;
use super::summary::{self, Repeat};
use crate::cli::{Arrivals, EndpointArg, OutputLengths, RunArgs};
use anyhow::{bail, Context as _};
use figures::Serving;
use repeat::one_repeat;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Instant;
use wattbench_core::{RunStatus, ServerConfig};
use wattbench_openai::api::Sampling;
use wattbench_openai::load::{self, Prompt};
use wattbench_openai::metrics::Targets;
use wattbench_openai::{Endpoint, Load, LoadOptions, Target};
use wattbench_workload::Tokenizer;

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let s = &args.server;
    let settings = &args.settings;
    let Some(base_url) = s.base_url.clone() else {
        bail!(
            "--engine openai needs --base-url URL: the server, for example http://127.0.0.1:8000"
        );
    };
    let Some(model) = args.model.clone() else {
        bail!("--engine openai needs --model NAME: the model name the server serves (its /v1/models lists them)");
    };
    if !args.gpus.is_empty() || args.tensor_parallel.is_some() {
        bail!("--gpus and --tensor-parallel split the embedded engine; a server places its model itself (measure its GPUs with --devices)");
    }
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
    let num_prompts = args.num_prompts.unwrap_or(4096);
    let batch_size = args.batch_size.unwrap_or(64);
    let max_new = args.max_new_tokens.unwrap_or(256);
    let repeats = args.repeats.unwrap_or(1);
    let concurrency = s.max_concurrency.unwrap_or(batch_size);
    for (flag, v) in [
        ("--num-prompts", num_prompts),
        ("--max-concurrency", concurrency),
        ("--max-new-tokens", max_new as usize),
        ("--repeats", repeats),
    ] {
        setup::positive(flag, v)?;
    }
    setup::check(settings)?;
    crate::prompts::spec(&args.dataset)?;
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
    let ds = setup::dataset(settings, &args.dataset, num_prompts, tokenizer.as_ref())?;
    let mut prompts = Vec::with_capacity(ds.records.len());
    for r in &ds.records {
        let limit = r.max_new_tokens.unwrap_or(max_new).min(max_new);
        let max_tokens = match (settings.output_lengths, &r.reference) {
            (OutputLengths::Max, _) => limit,
            (OutputLengths::Reference, Some(reference)) => {
                let Some(t) = &tokenizer else {
                    bail!("--output-lengths reference counts each reference answer's tokens; pass --tokenizer (the served model's tokenizer.json)");
                };
                (t.count(reference)? as u32).clamp(1, limit)
            }
            (OutputLengths::Reference, None) => {
                bail!(
                    "--output-lengths reference needs reference answers, and {} has none",
                    args.dataset
                )
            }
        };
        prompts.push(Prompt {
            text: r.prompt.clone(),
            max_tokens,
        });
    }
    // One point per request rate (an open loop each), or a closed loop.
    let loads: Vec<Load> = if s.request_rate.is_empty() {
        vec![Load::Closed { concurrency }]
    } else {
        s.request_rate
            .iter()
            .map(|&rate| Load::Open {
                rate,
                poisson: s.arrivals == Arrivals::Poisson,
                max_concurrency: s.max_concurrency,
            })
            .collect()
    };
    let endpoint = match s.endpoint {
        EndpointArg::Completions => Endpoint::Completions,
        EndpointArg::Chat => Endpoint::Chat,
    };
    let target = Target {
        base_url: base_url.clone(),
        model: model.clone(),
        api_key,
        endpoint,
        stream: !s.no_stream,
        ignore_eos: settings.sampling.ignore_eos,
        timeout: s.request_timeout,
    };
    let sampling = Sampling {
        temperature: settings.sampling.temperature,
        top_p: settings.sampling.top_p,
        seed: Some(settings.sampling.seed),
    };
    let targets = Targets {
        ttft_s: s.ttft_target.map(|d| d.as_secs_f64()),
        tpot_s: s.tpot_target.map(|d| d.as_secs_f64()),
        e2e_s: s.e2e_target.map(|d| d.as_secs_f64()),
    };
    let mut config = setup::config(
        settings,
        &model,
        "server",
        &[],
        &args.dataset,
        num_prompts,
        concurrency,
        max_new,
        repeats,
    );
    config.dtype = "server".into();
    config.chat_template = endpoint == Endpoint::Chat;
    config.tokenizer = settings
        .data
        .tokenizer
        .clone()
        .unwrap_or_else(|| "server usage".into());
    config.server = Some(ServerConfig {
        base_url: base_url.clone(),
        endpoint: format!("{:?}", s.endpoint).to_lowercase(),
        stream: !s.no_stream,
        max_concurrency: concurrency,
        request_rate: None,
        arrivals: format!("{:?}", s.arrivals).to_lowercase(),
    });

    let mut session = Session::open(settings.db.db.as_deref(), &settings.sensor, "server")?;
    let seed = settings.sampling.seed;
    let warm = (settings.warmup * concurrency).min(prompts.len());
    let started = Instant::now();
    if warm > 0 {
        eprintln!("warm-up: {warm} requests to {}", target.url());
        let warm_opts = LoadOptions {
            load: Load::Closed { concurrency },
            seed,
        };
        let outs = load::run(
            &target,
            &prompts[..warm],
            &sampling,
            &warm_opts,
            0,
            Instant::now(),
            session.stop_flag(),
            &|_| {},
        );
        if outs.iter().all(|o| !o.ok()) {
            let why = outs
                .first()
                .and_then(|o| o.detail.clone())
                .unwrap_or_default();
            let reason = outs
                .first()
                .and_then(|o| o.failure)
                .map(|f| f.reason())
                .unwrap_or_default();
            session.close();
            bail!("every warm-up request to {} failed ({reason}: {why}); check --base-url, --model and the server", target.url());
        }
    }
    let warmup_s = started.elapsed().as_secs_f64();
    let mut code = ExitCode::SUCCESS;
    let db = session.db_path.clone();
    'loads: for load in &loads {
        let opts = LoadOptions { load: *load, seed };
        let mut config = config.clone();
        if let (Some(sc), Load::Open { rate, .. }) = (config.server.as_mut(), load) {
            sc.request_rate = Some(*rate);
        }
        let pattern = match *load {
            Load::Closed { concurrency } => format!("{concurrency} in flight"),
            Load::Open { rate, poisson, .. } => format!(
                "{rate} per second, {}",
                if poisson { "Poisson" } else { "evenly" }
            ),
        };
        let mut done: Vec<(Repeat, Serving)> = Vec::new();
        for repeat in 0..repeats {
            if session.interrupted() {
                break;
            }
            eprintln!(
                "repeat {}/{repeats}: {} requests to {} ({pattern})",
                repeat + 1,
                prompts.len(),
                target.url(),
            );
            let (record, window, serving) = one_repeat(
                &mut session,
                &config,
                &target,
                &prompts,
                &sampling,
                &opts,
                &targets,
                tokenizer.as_ref(),
                repeat,
                warmup_s,
            );
            let failed = serving.summary.requests - serving.summary.succeeded;
            if failed as f64 > s.max_failure_rate * serving.summary.requests.max(1) as f64 {
                eprintln!(
                    "error: {failed} of {} requests failed, more than --max-failure-rate {}",
                    serving.summary.requests, s.max_failure_rate
                );
                code = ExitCode::from(1);
            }
            let stopped = record.status != RunStatus::Complete;
            done.push((session.store_run(record, window), serving));
            if stopped {
                code = ExitCode::from(if session.interrupted() { 130 } else { 1 });
                break;
            }
        }
        let (reps, servings): (Vec<Repeat>, Vec<Serving>) = done.into_iter().unzip();
        if settings.json {
            let mut v = summary::to_json(&reps, &db);
            v["serving"] = Value::Array(servings.iter().map(Serving::json).collect());
            println!("{}", serde_json::to_string(&v)?);
        } else {
            if loads.len() > 1 {
                println!("load: {pattern}");
            }
            println!("{}", summary::to_text(&reps, &db));
            if let Some(last) = servings.last() {
                println!("{}", last.text());
            }
        }
        for r in reps
            .iter()
            .filter(|r| r.record.status != RunStatus::Complete)
        {
            eprintln!(
                "error: {}",
                r.record.reason.as_deref().unwrap_or("the run stopped")
            );
        }
        if code.ne(&ExitCode::SUCCESS) && session.interrupted() {
            break 'loads;
        }
    }
    session.close();
    Ok(code)
}
