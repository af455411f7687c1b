//! `wattbench run`: one benchmark configuration, measured batch by batch and stored.

use crate::cli::{EngineKind, RunArgs, ServerArgs};
use crate::runner::caps::{self, Caps};
use crate::runner::session::{resolve_device, Session};
use crate::runner::{setup, summary};
use std::process::ExitCode;
use wattbench_core::RunConfig;

/// The defaults of a run without `--model` (prompts, batch, new tokens, repeats): small enough for
/// any laptop on the CPU; on a GPU long enough for windows of a few seconds, which the energy
/// counter (updated every ~100 ms) measures well.
const QUICK_CPU: (usize, usize, u32, usize) = (64, 16, 32, 3);
const QUICK_GPU: (usize, usize, u32, usize) = (512, 64, 128, 3);
/// The paper's defaults: 4,096 prompts, batch 64, 256 new tokens, one repeat.
const PAPER: (usize, usize, u32, usize) = (4096, 64, 256, 1);

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.server.engine == EngineKind::Openai {
        return crate::runner::serving::run(&args);
    }
    refuse_server_flags(&args.server)?;
    let gpus: Vec<usize> = match args.tensor_parallel {
        Some(0) => anyhow::bail!("--tensor-parallel must be at least 1"),
        Some(n) => (0..n).collect(),
        None => args.gpus.clone(),
    };
    let device = if gpus.len() > 1 {
        format!(
            "cuda:{}",
            gpus.iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    } else if let [g] = gpus.as_slice() {
        format!("cuda:{g}")
    } else {
        resolve_device(&args.settings.device)
    };
    let (d_prompts, d_batch, d_new, d_repeats) = match (&args.model, device.starts_with("cuda")) {
        (Some(_), _) => PAPER,
        (None, false) => QUICK_CPU,
        (None, true) => QUICK_GPU,
    };
    let model = args.model.clone().unwrap_or_else(|| {
        if device.starts_with("cuda") {
            "synthetic:smollm2-135m".into()
        } else {
            "synthetic:tiny".into()
        }
    });
    let num_prompts = args.num_prompts.unwrap_or(d_prompts);
    let batch_size = args.batch_size.unwrap_or(d_batch);
    let max_new_tokens = args.max_new_tokens.unwrap_or(d_new);
    let repeats = args.repeats.unwrap_or(d_repeats);
    let settings = &args.settings;
    setup::positive("--num-prompts", num_prompts)?;
    setup::positive("--batch-size", batch_size)?;
    setup::positive("--max-new-tokens", max_new_tokens as usize)?;
    setup::positive("--repeats", repeats)?;
    setup::check(settings)?;
    setup::check_score(settings, &args.dataset)?;
    crate::prompts::spec(&args.dataset)?;

    let caps = Caps::prepare(
        &settings.power,
        &settings.power.power_limit,
        &caps::gpus_of(&device),
    )?;
    if let (Some(c), true) = (&caps, settings.power.dry_run) {
        println!("{}", c.describe());
        return Ok(ExitCode::SUCCESS);
    }

    let mut session = Session::open(settings.db.db.as_deref(), &settings.sensor, &device)?;
    let (loaded, tokenizer) = setup::model(settings, &model, &device, &gpus)?;
    let ds = setup::dataset(settings, &args.dataset, num_prompts, Some(&tokenizer))?;
    let config = setup::config(
        settings,
        &model,
        &device,
        &gpus,
        &args.dataset,
        num_prompts,
        batch_size,
        max_new_tokens,
        repeats,
    );
    // One point per power limit (or one with the limits as they are).
    let limits: Vec<_> = caps
        .as_ref()
        .map_or(vec![None], |c| c.configs().into_iter().map(Some).collect());
    let mut caps = caps;
    let mut code = ExitCode::SUCCESS;
    for (k, limit) in limits.into_iter().enumerate() {
        let config = RunConfig {
            power_limit: limit.clone(),
            ..config.clone()
        };
        if let (Some(c), Some(l)) = (caps.as_mut(), &limit) {
            if let Err(e) = c.apply(k) {
                eprintln!("error: setting the power limit {}: {e:#}", l.requested);
                code = ExitCode::from(1);
                break;
            }
            if !settings.json {
                println!("power limit {} ({} W)", l.requested, watts(&l.limits_w));
            }
        }
        let result = session.run_point(
            &loaded,
            &tokenizer,
            &config,
            &ds,
            settings.score,
            None,
            &Default::default(),
        );
        let interrupted = session.interrupted();
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e:#}");
                code = ExitCode::from(1);
                break;
            }
        };
        if settings.json {
            println!(
                "{}",
                serde_json::to_string(&summary::to_json(&result.repeats, &session.db_path))?
            );
        } else if !result.repeats.is_empty() {
            println!("{}", summary::to_text(&result.repeats, &session.db_path));
        }
        if let Some(e) = result.failure {
            eprintln!("error: {e:#}");
            code = ExitCode::from(if interrupted { 130 } else { 1 });
            break;
        }
        if interrupted {
            code = ExitCode::from(130);
            break;
        }
    }
    // The limits go back before the sensors stop.
    drop(caps);
    session.close();
    Ok(code)
}

/// Flags that only a server run takes, refused for the embedded engine.
pub fn refuse_server_flags(s: &ServerArgs) -> anyhow::Result<()> {
    for (flag, given) in [
        ("--base-url", s.base_url.is_some()),
        ("--request-rate", !s.request_rate.is_empty()),
        ("--max-concurrency", s.max_concurrency.is_some()),
        ("--no-stream", s.no_stream),
        ("--api-key-env", s.api_key_env.is_some()),
    ] {
        if given {
            anyhow::bail!("{flag} is for --engine openai (a server); add --engine openai --base-url URL, or drop {flag}");
        }
    }
    Ok(())
}

/// `250` or `250/300` (one limit per capped GPU).
fn watts(limits: &[f64]) -> String {
    limits
        .iter()
        .map(|w| format!("{w:.0}"))
        .collect::<Vec<_>>()
        .join("/")
}
