//! One repeat against a server: the load sent inside an energy window, then its record (every
//! answered request with its latencies and its share of the energy) and its figures.

use super::figures::Serving;
use crate::runner::execute::measurement;
use crate::runner::session::Session;
use serde_json::json;
use std::time::Instant;
use wattbench_core::{summarize, RequestRecord, RunConfig, RunRecord, RunStatus, Timeline};
use wattbench_openai::api::Sampling;
use wattbench_openai::load::{self, Prompt};
use wattbench_openai::metrics::{self, Targets};
use wattbench_openai::{LoadOptions, Outcome, Target};
use wattbench_workload::{words_paper, Tokenizer};

/// The process's CPU time (user and system), in seconds.
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The energy of every sampling interval of every measured device inside `[t0, t1]`: from its
/// instantaneous power (trapezoids), or its counter where it reports no power; scaled so that
/// the intervals add up to the window's energy (the counter's, where there is one). One pass over
/// the timeline, so long runs cost no more than their samples.
fn intervals(
    devices: &[wattbench_core::DeviceInfo],
    timeline: &Timeline,
    (t0, t1): (f64, f64),
    window_j: Option<f64>,
) -> Option<Vec<(f64, f64, f64)>> {
    let mut out = Vec::new();
    for series in timeline
        .series
        .iter()
        .filter(|s| devices.iter().any(|d| d.id == s.device_id))
    {
        for w in series.points.windows(2) {
            let (p, q) = (&w[0], &w[1]);
            let (a, b) = (p.t_s.max(t0), q.t_s.min(t1));
            let dt = q.t_s - p.t_s;
            if b <= a || dt <= 0.0 {
                continue;
            }
            let e = match (
                p.reading.power_w,
                q.reading.power_w,
                p.reading.energy_j,
                q.reading.energy_j,
            ) {
                (Some(x), Some(y), _, _) => (x + y) / 2.0 * dt,
                (_, _, Some(x), Some(y)) if y >= x => y - x,
                _ => continue,
            };
            out.push((a, b, e * (b - a) / dt));
        }
    }
    let total: f64 = out.iter().map(|i| i.2).sum();
    if out.is_empty() || total <= 0.0 {
        return None;
    }
    if let Some(w) = window_j {
        for i in &mut out {
            i.2 *= w / total;
        }
    }
    Some(out)
}

#[allow(clippy::too_many_arguments)]
pub fn one_repeat(
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
    let energies = intervals(&devices, &timeline, (t0, t1), window.energy_j)
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
