//! Runs against an OpenAI-compatible server: the prompts sent under a load pattern while the
//! sensors measure, then the record (every answered request with its latencies and its share of
//! the energy) and the serving figures: latency percentiles, the steady state's throughput and
//! energy, goodput, failures by reason and the client's own CPU time.

use super::execute::measurement;
use super::session::Session;
use super::setup;
use super::summary::{self, Repeat};
use crate::cli::{Arrivals, EndpointArg, OutputLengths, RunArgs};
use crate::ui;
use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Instant;
use wattbench_core::{
    summarize, RequestRecord, RunConfig, RunRecord, RunStatus, ServerConfig, Timeline,
};
use wattbench_openai::api::Sampling;
use wattbench_openai::load::{self, Prompt};
use wattbench_openai::metrics::{self, Spread, Summary, Targets};
use wattbench_openai::{Endpoint, Load, LoadOptions, Outcome, Target};
use wattbench_workload::{words_paper, Tokenizer};

/// The process's CPU time (user and system), in seconds.
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Energy of every sampling interval inside `[t0, t1]`, summed over `devices`.
fn intervals(
    devices: &[wattbench_core::DeviceInfo],
    timeline: &Timeline,
    t0: f64,
    t1: f64,
) -> Option<Vec<(f64, f64, f64)>> {
    let mut ticks: Vec<f64> = timeline
        .series
        .first()?
        .points
        .iter()
        .map(|p| p.t_s)
        .filter(|&t| t > t0 && t < t1)
        .collect();
    ticks.insert(0, t0);
    ticks.push(t1);
    ticks
        .windows(2)
        .map(|w| {
            Some((
                w[0],
                w[1],
                summarize(devices, timeline, w[0], w[1], None).energy_j?,
            ))
        })
        .collect()
}

fn spread_row(name: &str, s: &Option<Spread>) -> Vec<String> {
    let ms = |v: f64| format!("{:.1}", v * 1e3);
    match s {
        Some(s) => vec![
            name.into(),
            s.n.to_string(),
            ms(s.mean),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
        ],
        None => vec![
            name.into(),
            "0".into(),
            "n/a".into(),
            "n/a".into(),
            "n/a".into(),
            "n/a".into(),
        ],
    }
}

/// The serving figures of one repeat, for the summary and the JSON.
struct Serving {
    summary: Summary,
    /// (start, end, seconds, output tokens, energy J) of the steady state.
    steady: Option<(f64, f64, f64, f64, Option<f64>)>,
    client_cpu_s: f64,
    warnings: Vec<String>,
}

impl Serving {
    fn json(&self) -> Value {
        json!({
            "summary": self.summary,
            "steady_state": self.steady.map(|(a, b, secs, tokens, e)| json!({
                "start_s": a, "end_s": b, "seconds": secs, "output_tokens": tokens,
                "output_tokens_per_s": tokens / secs, "energy_j": e,
                "j_per_token": e.map(|e| e / tokens),
            })),
            "client_cpu_s": self.client_cpu_s,
            "client_cpu_ms_per_token": self.summary.output_tokens.map(|t| 1e3 * self.client_cpu_s / t.max(1) as f64),
            "warnings": self.warnings,
        })
    }

    fn text(&self) -> String {
        let s = &self.summary;
        let mut out = format!("\nrequests: {} sent, {} answered", s.requests, s.succeeded);
        if !s.failures.is_empty() {
            let f: Vec<String> = s
                .failures
                .iter()
                .map(|(k, v)| format!("{k} × {v}"))
                .collect();
            out.push_str(&format!("; failed: {}", f.join(", ")));
        }
        if s.usage_missing > 0 {
            out.push_str(&format!("; {} without token usage", s.usage_missing));
        }
        let rows = vec![
            spread_row("time to first token", &s.ttft_s),
            spread_row("inter-token latency", &s.itl_s),
            spread_row("time per output token", &s.tpot_s),
            spread_row("end-to-end latency", &s.e2e_s),
        ];
        out.push_str(&format!(
            "\n\n{}\n",
            ui::table(
                &["latency", "n", "mean ms", "p50 ms", "p90 ms", "p99 ms"],
                &rows,
                2
            )
        ));
        if let Some(g) = s.goodput_per_s {
            out.push_str(&format!("goodput: {g:.3} requests/s within the targets\n"));
        }
        match self.steady {
            Some((_, _, secs, tokens, e)) => out.push_str(&format!(
                "steady state ({secs:.2} s from full to draining): {:.1} tokens/s, {} J/token\n",
                tokens / secs,
                ui::num(e.map(|e| e / tokens), 4)
            )),
            None => {
                out.push_str("steady state: n/a (the server never held the full concurrency)\n")
            }
        }
        out.push_str(&format!(
            "client CPU: {:.2} s ({} ms per output token)\n",
            self.client_cpu_s,
            ui::num(
                s.output_tokens
                    .map(|t| 1e3 * self.client_cpu_s / t.max(1) as f64),
                3
            )
        ));
        for w in &self.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
        out
    }
}

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

#[allow(clippy::too_many_arguments)]
fn one_repeat(
    session: &mut Session,
    config: &RunConfig,
    target: &Target,
    prompts: &[Prompt],
    sampling: &Sampling,
    opts: &LoadOptions,
    targets: &Targets,
    tokenizer: Option<&Tokenizer>,
    repeat: usize,
    warmup_s: f64,
) -> (RunRecord, Option<wattbench_core::Measurement>, Serving) {
    let sampler = session.sampler();
    let clock = Instant::now();
    let offset = sampler.elapsed_s();
    let cpu0 = cpu_s();
    let t0 = sampler.mark();
    let mut outcomes = load::run(
        target,
        prompts,
        sampling,
        opts,
        0,
        clock,
        session.stop_flag(),
        &|_| {},
    );
    let t1 = sampler.mark();
    let client_cpu_s = cpu_s() - cpu0;
    // Onto the sampler's clock.
    for o in &mut outcomes {
        o.start_s += offset;
        o.end_s += offset;
        o.first_token_s = o.first_token_s.map(|t| t + offset);
        for t in &mut o.token_times {
            *t += offset;
        }
    }
    let timeline = sampler.snapshot();
    let devices = session.devices.clone();
    let window = measurement(
        &devices,
        &timeline,
        (t0, t1),
        sampler.start_unix_s(),
        session.warnings().to_vec(),
        config.interval_s,
        json!({ "run": config, "repeat": repeat }),
    );
    let count = |text: &str| tokenizer.and_then(|t| t.count(text).ok()).map(|n| n as u64);
    let counts = |o: &Outcome| {
        let u = o.usage.unwrap_or_default();
        (
            u.completion_tokens.or_else(|| count(&o.text)),
            u.prompt_tokens.or_else(|| count(&prompts[o.index].text)),
        )
    };
    let summary = metrics::summarize(&outcomes, &counts, targets);
    let ok: Vec<Outcome> = outcomes.iter().filter(|o| o.ok()).cloned().collect();
    let energies = intervals(&devices, &timeline, t0, t1)
        .map(|iv| metrics::apportion(&ok, &|o: &Outcome| counts(o).0, &iv));
    let mut warnings = Vec::new();
    let steady = metrics::steady_window(&outcomes, opts.load.cap()).map(|(a, b)| {
        let tokens: f64 = ok
            .iter()
            .map(|o| {
                let per_event = counts(o).0.unwrap_or(0) as f64 / o.token_times.len().max(1) as f64;
                let streamed = o.token_times.iter().filter(|&&t| t >= a && t < b).count() as f64;
                if o.token_times.is_empty() {
                    // Whole responses: their tokens spread over their lives.
                    let life = (o.end_s - o.start_s).max(1e-9);
                    counts(o).0.unwrap_or(0) as f64
                        * ((o.end_s.min(b) - o.start_s.max(a)).max(0.0) / life)
                } else {
                    streamed * per_event
                }
            })
            .sum();
        let e = summarize(&devices, &timeline, a, b, None).energy_j;
        (a, b, b - a, tokens, e)
    });
    match steady {
        Some((_, _, secs, _, _)) if secs < 10.0 * config.interval_s.max(0.1) || secs < 2.0 => warnings.push(format!(
            "the steady state lasted {secs:.2} s, too short to measure well; send more prompts (--num-prompts)"
        )),
        None => warnings.push("the server never held the full concurrency, so there is no steady state; send more prompts or lower --max-concurrency".into()),
        _ => {}
    }
    let mut notes = Vec::new();
    let missing: Vec<&Outcome> = ok.iter().filter(|o| counts(o).0.is_none()).collect();
    let (status, reason) = if session.interrupted() {
        (
            RunStatus::Failed,
            Some("interrupted (Ctrl-C): the requests sent before it are stored".to_string()),
        )
    } else if !missing.is_empty() {
        (
            RunStatus::Failed,
            Some(format!(
                "{} answers came without token usage and no tokenizer counts them; pass --tokenizer (the served model's tokenizer.json)",
                missing.len()
            )),
        )
    } else if ok.is_empty() {
        (
            RunStatus::Failed,
            Some("no request was answered".to_string()),
        )
    } else {
        (RunStatus::Complete, None)
    };
    if !summary.failures.is_empty() {
        let f: Vec<String> = summary
            .failures
            .iter()
            .map(|(k, v)| format!("{k} × {v}"))
            .collect();
        notes.push(format!(
            "{} of {} requests failed ({}); the figures count the answered ones",
            summary.requests - summary.succeeded,
            summary.requests,
            f.join(", ")
        ));
    }
    let requests = ok
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let (out, inp) = counts(o);
            RequestRecord {
                batch: 0,
                position: o.index,
                dataset_index: o.index,
                input_tokens: inp.unwrap_or(0),
                output_tokens: out.unwrap_or(0),
                words: Some(words_paper(&o.text) as u64),
                finish: o.finish_reason.clone().unwrap_or_else(|| "unknown".into()),
                energy_j: energies.as_ref().map(|e| e[i]),
                latency_s: o.end_s - o.start_s,
                output_text: Some(o.text.clone()),
                correct: None,
                ttft_s: o.first_token_s.map(|f| f - o.start_s),
                tpot_s: metrics::tpot(o, out),
            }
        })
        .collect();
    let record = RunRecord {
        id: None,
        key: config.key(),
        sweep: None,
        repeat,
        status,
        reason,
        config: config.clone(),
        measurement_id: None,
        started_at: window.started_at.clone(),
        wall_s: t1 - t0,
        warmup_s,
        harness_s: 0.0,
        energy_j: window.energy_j,
        notes,
        batches: Vec::new(),
        requests,
    };
    (
        record,
        Some(window),
        Serving {
            summary,
            steady,
            client_cpu_s,
            warnings,
        },
    )
}
