//! `wattbench generate`: one prompt through the embedded engine, streamed to the terminal, with
//! prefill time, decode speed and, where a sensor exists, the energy of the generation.

use crate::cli::GenerateArgs;
use crate::{engine, meters, ui};
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use wattbench_core::summarize;
use wattbench_engine::{generate, GenerationParams, Request};
use wattbench_meter::{EnergySensor, Sampler};

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let loaded = engine::load(&args.model)?;
    let tok = loaded.tokenizer.as_ref().with_context(|| {
        format!(
            "{} has no tokenizer to turn the prompt into tokens; pass --tokenizer (a tokenizer.json, model folder or .gguf)",
            args.model.model
        )
    })?;
    let text = match (
        args.raw,
        tok.apply_chat_template(&args.prompt, args.system.as_deref())?,
    ) {
        (false, Some(t)) => t,
        _ => args.prompt.clone(),
    };
    let mut prompt = tok.encode(&text)?;
    if args.raw && tok.add_bos {
        prompt.splice(0..0, tok.bos_id);
    }
    let params = GenerationParams {
        temperature: args.sampling.temperature,
        top_p: args.sampling.top_p,
        seed: args.sampling.seed,
        ignore_eos: args.sampling.ignore_eos,
        eos_ids: tok.eos_id.into_iter().collect(),
    };
    if loaded.synthetic {
        eprintln!(
            "note: {} has random weights; its text is meaningless, its speed and energy are real",
            args.model.model
        );
    }
    let sensors = meters::open(&args.sensor)?;
    let devices = sensors.devices().to_vec();
    let sampler = Sampler::start(sensors, args.sensor.interval, true, None)
        .context("starting the sampler")?;
    let mut shown = String::new();
    let mut tokens = Vec::new();
    let mut stdout = std::io::stdout();
    let t0 = sampler.mark();
    let result = generate(
        &loaded.model,
        &[Request {
            prompt: prompt.clone(),
            max_new_tokens: args.max_new_tokens,
        }],
        &params,
        &args.model.model,
        None,
        &mut |_, t| {
            tokens.push(t);
            if let Ok(all) = tok.decode_text(&tokens) {
                // Print only whole characters: a partial UTF-8 sequence decodes to U+FFFD.
                if !all.ends_with('\u{FFFD}') && all.len() >= shown.len() && all.starts_with(&shown)
                {
                    let _ = write!(stdout, "{}", &all[shown.len()..]);
                    let _ = stdout.flush();
                    shown = all;
                }
            }
        },
    );
    let t1 = sampler.mark();
    let out = sampler.stop();
    let r = result?;
    println!();
    let n = r.outputs[0].tokens.len();
    let decode_tokens = n.saturating_sub(1);
    eprintln!(
        "\n{} prompt tokens, {n} new ({:?}); prefill {:.3} s; decode {decode_tokens} tokens in {:.3} s = {} tok/s",
        prompt.len(),
        r.outputs[0].finish,
        r.prefill_s,
        r.decode_s,
        ui::num((r.decode_s > 0.0).then(|| decode_tokens as f64 / r.decode_s), 1)
    );
    let s = summarize(&devices, &out.timeline, t0, t1, None);
    match s.energy_j {
        Some(e) => eprintln!(
            "energy {e:.1} J over {:.3} s ({:.1} W); {:.3} J per new token",
            t1 - t0,
            e / (t1 - t0),
            e / n.max(1) as f64
        ),
        None => eprintln!("energy n/a: no sensor measured it here (see `wattbench devices`)"),
    }
    Ok(ExitCode::SUCCESS)
}
