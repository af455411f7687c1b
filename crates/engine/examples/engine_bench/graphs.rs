//! `--mode graphs`: decode steps replayed from a CUDA graph against the same steps queued one
//! operation at a time: the same tokens (sampled at temperature 0.8 / top-p 0.95, and greedy) for
//! prompts of different lengths, and the time of each way. With `--gpus N`, on N shards.

use crate::{arg, load};
use std::time::Instant;
use wattbench_engine::cuda::graph::set_enabled;
use wattbench_engine::*;
use wattbench_workload::sample::SplitMix64;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub fn run(args: &[String]) -> Res<()> {
    let (model, _, dtype, loaded) = load(args, "synthetic:smollm2-135m", "cuda", "bf16")?;
    let steps: u32 = arg(args, "--steps", "48").parse()?;
    let batch: usize = arg(args, "--batch", "5").parse()?;
    let vocab = loaded.model.cfg.vocab_size as u64;
    let mut rng = SplitMix64::new(2027);
    let reqs: Vec<Request> = (0..batch)
        .map(|i| Request {
            prompt: (0..5 + 7 * i).map(|_| rng.below(vocab) as u32).collect(),
            max_new_tokens: steps,
        })
        .collect();
    let mut report = serde_json::Map::new();
    for (name, temperature, top_p) in [("sampled", 0.8, 0.95), ("greedy", 0.0, 1.0)] {
        let params = GenerationParams {
            temperature,
            top_p,
            seed: 11,
            ignore_eos: true,
            eos_ids: vec![],
        };
        let mut runs = Vec::new();
        for graphs in [false, true] {
            set_enabled(graphs);
            let t = Instant::now();
            let r = loaded.generate(&reqs, &params, None, &mut |_, _| {})?;
            runs.push((r, t.elapsed().as_secs_f64()));
        }
        let tokens = |r: &BatchResult| {
            r.outputs
                .iter()
                .map(|o| o.tokens.clone())
                .collect::<Vec<_>>()
        };
        report.insert(
            name.into(),
            serde_json::json!({
                "same_tokens": tokens(&runs[0].0) == tokens(&runs[1].0),
                "graph_used": [runs[0].0.cuda_graph, runs[1].0.cuda_graph],
                "decode_s": [runs[0].0.decode_s, runs[1].0.decode_s],
                "seconds": [runs[0].1, runs[1].1],
                "first_tokens": tokens(&runs[1].0).first().map(|t| t[..t.len().min(8)].to_vec()),
            }),
        );
    }
    println!(
        "{}",
        serde_json::json!({ "graphs": { "model": model, "dtype": format!("{dtype:?}"), "gpus": loaded.devices(), "batch": batch, "steps": steps, "runs": report } })
    );
    Ok(())
}
