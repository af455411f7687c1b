//! One repeat of a run: every batch inside its own energy window, then the records.
//!
//! Inside the run's window the harness only builds the next batch's requests and counts tokens;
//! decoding text, counting words, scoring and every energy figure are computed after the last
//! batch, from one copy of the timeline, so that they cost nothing inside the window.

use super::plan::{final_number, Plan};
use super::progress::Progress;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};
use wattbench_core::{
    summarize, BatchRecord, DeviceInfo, Measurement, RequestRecord, RunConfig, RunRecord,
    RunStatus, SamplerStats, Timeline, Warning,
};
use wattbench_engine::{EngineError, GenerationParams, LoadedModel, Request};
use wattbench_meter::{Sampler, SensorSet};
use wattbench_workload::{gsm8k_final_answer, words_paper, Tokenizer};

/// Everything a repeat needs, prepared once per run.
pub struct Context<'a> {
    pub model: &'a LoadedModel,
    pub tokenizer: &'a Tokenizer,
    pub plan: &'a Plan,
    pub config: &'a RunConfig,
    pub params: GenerationParams,
    pub sampler: &'a Sampler<SensorSet>,
    pub devices: &'a [DeviceInfo],
    /// Warnings that hold for every window (other processes on a measured GPU).
    pub warnings: Vec<Warning>,
    pub sweep: Option<String>,
    pub score: bool,
    pub progress: &'a Progress,
    /// Set by Ctrl-C: the run stops after the current batch and keeps what it measured.
    pub stop: &'a AtomicBool,
}

/// A finished repeat: the record, its energy window (when a batch ran), and the error that
/// stopped it, if any.
pub struct Outcome {
    pub record: RunRecord,
    pub window: Option<Measurement>,
    pub error: Option<anyhow::Error>,
}

/// Whether an engine error means the configuration cannot run here (rather than a fault).
pub fn infeasible(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::OutOfMemory { .. } | EngineError::TooLong { .. }
    )
}

fn requests(batch: &[super::plan::PlannedRequest]) -> Vec<Request> {
    batch
        .iter()
        .map(|r| Request {
            prompt: r.prompt.clone(),
            max_new_tokens: r.max_new_tokens,
        })
        .collect()
}

/// Generates the first `cfg.warmup_batches` batches untimed: the timed batches then start with
/// every kernel compiled, every allocation pooled and the clocks up. Returns the seconds spent.
pub fn warm_up(ctx: &Context<'_>) -> Result<f64, EngineError> {
    let t = Instant::now();
    let n = ctx.config.warmup_batches;
    ctx.progress.phase(
        "warm-up".into(),
        n.min(
            ctx.plan
                .requests
                .len()
                .div_ceil(ctx.config.batch_size.max(1)),
        ),
        ctx.plan
            .batches(ctx.config.batch_size)
            .take(n)
            .flatten()
            .map(|r| u64::from(r.max_new_tokens))
            .sum(),
    );
    for (i, batch) in ctx.plan.batches(ctx.config.batch_size).take(n).enumerate() {
        ctx.progress.batch.store(i, Ordering::Relaxed);
        ctx.model
            .generate(&requests(batch), &ctx.params, None, &mut |_, _| {
                ctx.progress.tokens.fetch_add(1, Ordering::Relaxed);
            })?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The record of a configuration that cannot run here, with no batch measured.
pub fn infeasible_record(
    config: &RunConfig,
    sweep: Option<String>,
    reason: String,
    notes: Vec<String>,
) -> RunRecord {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    RunRecord {
        id: None,
        key: config.key(),
        sweep,
        repeat: 0,
        status: RunStatus::Infeasible,
        reason: Some(reason),
        config: config.clone(),
        measurement_id: None,
        started_at: crate::provenance::rfc3339(now),
        wall_s: 0.0,
        warmup_s: 0.0,
        harness_s: 0.0,
        energy_j: None,
        notes,
        batches: Vec::new(),
        requests: Vec::new(),
    }
}

/// The timeline of `devices` cut to `[t0, t1]`, keeping one reading on each side for
/// interpolation.
fn crop(t: &Timeline, devices: &[DeviceInfo], t0: f64, t1: f64) -> Timeline {
    let mut out = t.clone();
    out.series
        .retain(|s| devices.iter().any(|d| d.id == s.device_id));
    for s in &mut out.series {
        let first = s.points.iter().rposition(|p| p.t_s <= t0).unwrap_or(0);
        let last = s
            .points
            .iter()
            .position(|p| p.t_s >= t1)
            .map_or(s.points.len(), |i| i + 1);
        s.points = s.points[first..last.max(first)].to_vec();
    }
    out
}

/// The energy window `[w0, w1]` (seconds on the sampler's clock) of `devices`, with its timeline.
pub fn measurement(
    devices: &[DeviceInfo],
    timeline: &Timeline,
    (w0, w1): (f64, f64),
    start_unix: f64,
    mut warnings: Vec<Warning>,
    interval_s: f64,
    config: serde_json::Value,
) -> Measurement {
    let s = summarize(devices, timeline, w0, w1, None);
    warnings.extend(s.warnings);
    let cropped = crop(timeline, devices, w0, w1);
    let samples = cropped.series.first().map_or(0, |s| s.points.len() as u64);
    Measurement {
        id: None,
        started_at: crate::provenance::rfc3339(start_unix + w0),
        finished_at: crate::provenance::rfc3339(start_unix + w1),
        started_unix_s: start_unix + w0,
        wall_s: w1 - w0,
        command: std::env::args().collect(),
        exit_code: None,
        energy_j: s.energy_j,
        avg_power_w: s.avg_power_w,
        peak_power_w: s.peak_power_w,
        idle_power_w: None,
        net_energy_j: None,
        devices: s.devices,
        warnings,
        sampler: SamplerStats {
            interval_s,
            samples,
            ..SamplerStats::default()
        },
        config,
        provenance: crate::provenance::collect(),
        window_start_s: w0,
        timeline: cropped,
    }
}

/// Runs every batch of the plan once, as repeat `repeat`.
pub fn run_repeat(ctx: &Context<'_>, repeat: usize, warmup_s: f64) -> Outcome {
    let cfg = ctx.config;
    let batches: Vec<_> = ctx.plan.batches(cfg.batch_size).collect();
    ctx.progress.phase(
        if cfg.repeats > 1 {
            format!("repeat {}/{}", repeat + 1, cfg.repeats)
        } else {
            "run".into()
        },
        batches.len(),
        ctx.plan.planned_tokens(),
    );
    let mut status = RunStatus::Complete;
    let mut reason = None;
    let mut error = None;
    // (t0, t1, result) of every batch that ran.
    let mut done = Vec::with_capacity(batches.len());
    for (i, batch) in batches.iter().enumerate() {
        if ctx.stop.load(Ordering::SeqCst) {
            status = RunStatus::Failed;
            reason = Some("interrupted (Ctrl-C)".to_string());
            error = Some(anyhow::anyhow!(
                "interrupted; the {} batches measured before it are stored",
                done.len()
            ));
            break;
        }
        ctx.progress.batch.store(i, Ordering::Relaxed);
        let reqs = requests(batch);
        let t0 = ctx.sampler.mark();
        let r = ctx.model.generate(&reqs, &ctx.params, None, &mut |_, _| {
            ctx.progress.tokens.fetch_add(1, Ordering::Relaxed);
        });
        let t1 = ctx.sampler.mark();
        match r {
            Ok(r) => done.push((t0, t1, r)),
            Err(e) => {
                status = if infeasible(&e) {
                    RunStatus::Infeasible
                } else {
                    RunStatus::Failed
                };
                reason = Some(format!("batch {i}: {e}"));
                error = Some(anyhow::Error::new(e).context(format!("batch {i} of the run")));
                break;
            }
        }
    }
    let timeline = ctx.sampler.snapshot();
    let start_unix = ctx.sampler.start_unix_s();
    let (w0, w1) = match (done.first(), done.last()) {
        (Some(f), Some(l)) => (f.0, l.1),
        _ => {
            let t = ctx.sampler.elapsed_s();
            (t, t)
        }
    };
    let wall = w1 - w0;
    let mut record_batches = Vec::with_capacity(done.len());
    let mut record_requests = Vec::new();
    let real_text = !ctx.model.synthetic;
    for (i, (t0, t1, r)) in done.iter().enumerate() {
        let s = summarize(ctx.devices, &timeline, *t0, *t1, None);
        let n = r.outputs.len();
        let planned = batches[i];
        record_batches.push(BatchRecord {
            index: i,
            start_s: t0 - w0,
            wall_s: t1 - t0,
            prefill_s: r.prefill_s,
            decode_s: r.decode_s,
            prompts: n,
            padded_prompt_len: r.padded_prompt_len,
            input_tokens: planned.iter().map(|p| p.prompt.len() as u64).sum(),
            output_tokens: r.outputs.iter().map(|o| o.tokens.len() as u64).sum(),
            energy_j: s.energy_j,
            avg_power_w: s.avg_power_w,
        });
        for (pos, (o, p)) in r.outputs.iter().zip(planned.iter()).enumerate() {
            let text = real_text
                .then(|| ctx.tokenizer.decode_text(&o.tokens).ok())
                .flatten();
            let correct = match (ctx.score, &text, &p.reference) {
                (true, Some(t), Some(reference)) => Some(
                    final_number(t).as_deref()
                        == gsm8k_final_answer(reference)
                            .and_then(final_number)
                            .as_deref(),
                ),
                _ => None,
            };
            record_requests.push(RequestRecord {
                batch: i,
                position: pos,
                dataset_index: p.dataset_index,
                input_tokens: p.prompt.len() as u64,
                output_tokens: o.tokens.len() as u64,
                words: text.as_deref().map(|t| words_paper(t) as u64),
                finish: serde_json::to_value(o.finish)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                energy_j: s.energy_j.map(|e| e / n as f64),
                latency_s: t1 - t0,
                output_text: text,
                correct,
                ttft_s: None,
                tpot_s: None,
            });
        }
    }
    let mut notes = ctx.plan.notes.clone();
    if !real_text {
        notes.push(
            "words are null: the model has random weights, so its text is meaningless (tokens and energy are real)"
                .into(),
        );
    }
    let window = (!done.is_empty()).then(|| {
        measurement(
            ctx.devices,
            &timeline,
            (w0, w1),
            start_unix,
            ctx.warnings.clone(),
            cfg.interval_s,
            serde_json::json!({ "run": cfg, "repeat": repeat }),
        )
    });
    let batch_time: f64 = record_batches.iter().map(|b| b.wall_s).sum();
    Outcome {
        record: RunRecord {
            id: None,
            key: cfg.key(),
            sweep: ctx.sweep.clone(),
            repeat,
            status,
            reason,
            config: cfg.clone(),
            measurement_id: None,
            started_at: crate::provenance::rfc3339(start_unix + w0),
            wall_s: wall,
            warmup_s,
            harness_s: (wall - batch_time).max(0.0),
            energy_j: window.as_ref().and_then(|m| m.energy_j),
            notes,
            batches: record_batches,
            requests: record_requests,
        },
        window,
        error,
    }
}
