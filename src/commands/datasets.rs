//! `wattbench datasets [NAME]`: the known datasets and where each loads from, or one dataset's
//! records and length statistics.

use crate::cli::DatasetsArgs;
use crate::prompts;
use serde_json::json;
use std::process::ExitCode;
use wattbench_workload::load::locate;
use wattbench_workload::stats::{Histogram, LengthStats};
use wattbench_workload::{words_paper, words_unicode, DatasetSpec, SampleOptions};

const FORMS: [(&str, &str); 6] = [
    (
        "alpaca[:PATH]",
        "Stanford Alpaca, 52,002 instructions (Alpaca prompt template)",
    ),
    (
        "gsm8k[:PATH]",
        "GSM8K grade-school math, 7,473 train + 1,319 test (test bundled)",
    ),
    (
        "sharegpt[:PATH]",
        "ShareGPT conversations: first human turn as prompt",
    ),
    (
        "jsonl:PATH / csv:PATH",
        "any file, with --prompt-field [--reference-field]",
    ),
    (
        "hf:ORG/NAME[@REV]",
        "a Hugging Face hub dataset, downloaded once into the hub cache",
    ),
    (
        "synthetic:in=N,out=M",
        "prompts of exact token lengths from --tokenizer (N, normal(M,SD), uniform(A,B))",
    ),
];

pub fn run(args: DatasetsArgs) -> anyhow::Result<ExitCode> {
    let opts = prompts::load_options(&args.data);
    let Some(name) = &args.name else {
        let rows: Vec<(String, String, String)> = FORMS
            .iter()
            .map(|(form, what)| {
                let key = form.split(['[', ' ', ':']).next().unwrap_or(form);
                let from = match key {
                    "jsonl" | "csv" => "the file named".to_string(),
                    "hf" => format!(
                        "hub {} (cached in {})",
                        opts.hub.endpoint,
                        opts.hub.cache.display()
                    ),
                    "synthetic" => "built at run time from --tokenizer".to_string(),
                    _ => DatasetSpec::parse(key)
                        .map_or_else(|e| e.to_string(), |s| locate(&s, &opts)),
                };
                (form.to_string(), what.to_string(), from)
            })
            .collect();
        if args.json {
            let v: Vec<_> = rows
                .iter()
                .map(|(f, w, l)| json!({ "dataset": f, "description": w, "loads_from": l }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "datasets": v }))?
            );
        } else {
            for (form, what, from) in rows {
                println!("{form:<24} {what}\n{:<24} loads from: {from}", "");
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let spec = prompts::spec(name)?;
    let tok = prompts::tokenizer(&args.data)?;
    let ds = match (args.num_prompts, &spec) {
        (Some(n), _) => wattbench_workload::prompts(
            &spec,
            &opts,
            &SampleOptions {
                num_prompts: n,
                seed: args.seed,
                with_replacement: args.with_replacement,
                ..SampleOptions::default()
            },
            tok.as_ref(),
        )?,
        (None, DatasetSpec::Synthetic(_)) => {
            anyhow::bail!("a synthetic dataset has no fixed size; pass --num-prompts N")
        }
        (None, _) => wattbench_workload::load(&spec, &opts)?,
    };
    let prompts: Vec<&str> = ds.records.iter().map(|r| r.prompt.as_str()).collect();
    let refs: Vec<&str> = ds
        .records
        .iter()
        .filter_map(|r| r.reference.as_deref())
        .collect();
    let measure = |texts: &[&str]| -> anyhow::Result<Lengths> {
        let words: Vec<usize> = texts.iter().map(|t| words_paper(t)).collect();
        let chars: Vec<usize> = texts.iter().map(|t| t.chars().count()).collect();
        let tokens = match &tok {
            Some(t) => Some(
                texts
                    .iter()
                    .map(|x| t.count(x))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(Lengths {
            words: LengthStats::of(&words),
            words_unicode: LengthStats::of(
                &texts.iter().map(|t| words_unicode(t)).collect::<Vec<_>>(),
            ),
            tokens: tokens.as_deref().and_then(LengthStats::of),
            chars: LengthStats::of(&chars),
            histogram: Histogram::of(tokens.as_deref().unwrap_or(&words), 12),
            histogram_unit: if tokens.is_some() { "tokens" } else { "words" },
        })
    };
    let prompt = measure(&prompts)?;
    let reference = if refs.is_empty() {
        None
    } else {
        Some(measure(&refs)?)
    };
    let doc = json!({
        "dataset": ds.name,
        "source": ds.source,
        "records": ds.records.len(),
        "skipped": ds.skipped,
        "tokenizer": tok.as_ref().map(|t| t.source.clone()),
        "prompt": prompt,
        "reference": reference,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} records from {}",
        ds.name,
        ds.records.len(),
        ds.source
    );
    if ds.skipped > 0 {
        println!("skipped {} record(s) without a prompt", ds.skipped);
    }
    for (part, m) in [("prompt", Some(&prompt)), ("reference", reference.as_ref())] {
        let Some(m) = m else { continue };
        println!("\n{part} lengths     min    mean     p50     p90     p99     max");
        for (unit, s) in [
            ("words", &m.words),
            ("words_unicode", &m.words_unicode),
            ("tokens", &m.tokens),
            ("chars", &m.chars),
        ] {
            if let Some(s) = s {
                println!(
                    "  {unit:<13} {:>5} {:>7.1} {:>7} {:>7} {:>7} {:>7}",
                    s.min, s.mean, s.p50, s.p90, s.p99, s.max
                );
            }
        }
        if let Some(h) = &m.histogram {
            println!(
                "\n  {part} length histogram ({})\n{}",
                m.histogram_unit,
                h.render(40)
            );
        }
    }
    if tok.is_none() {
        println!("\n(pass --tokenizer to count tokens)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Length statistics of a list of texts.
#[derive(serde::Serialize)]
struct Lengths {
    words: Option<LengthStats>,
    words_unicode: Option<LengthStats>,
    tokens: Option<LengthStats>,
    chars: Option<LengthStats>,
    histogram: Option<Histogram>,
    histogram_unit: &'static str,
}
