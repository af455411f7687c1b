//! The largest batch that fits: doubling until a batch runs out of memory, then bisection. Each
//! probe allocates the full KV cache, prefills the longest prompts of the sample and runs one
//! decode step: the most memory a batch of that size can take.

use super::plan::Plan;
use wattbench_engine::{fits, GenerationParams, LoadedModel, Request};

/// Probed batch sizes and whether each fit.
pub struct Search {
    pub max_batch: usize,
    /// The search reached `limit` without running out of memory.
    pub hit_limit: bool,
    pub probes: Vec<(usize, bool)>,
}

pub fn search(
    model: &LoadedModel,
    name: &str,
    plan: &Plan,
    params: &GenerationParams,
    limit: usize,
) -> anyhow::Result<Search> {
    if model.devices() > 1 {
        anyhow::bail!("--find-max-batch probes one GPU; drop --gpus");
    }
    let mut longest: Vec<&super::plan::PlannedRequest> = plan.requests.iter().collect();
    longest.sort_by_key(|r| std::cmp::Reverse(r.prompt.len() + r.max_new_tokens as usize));
    if longest.is_empty() {
        anyhow::bail!("no prompts to probe with");
    }
    let batch = |n: usize| -> Vec<Request> {
        (0..n)
            .map(|i| {
                let r = longest[i % longest.len()];
                Request {
                    prompt: r.prompt.clone(),
                    max_new_tokens: r.max_new_tokens,
                }
            })
            .collect()
    };
    let mut probes = Vec::new();
    let mut probe = |n: usize| -> anyhow::Result<bool> {
        let ok = match fits(&model.model, &batch(n), params, name) {
            Ok(()) => true,
            Err(e) if e.is_out_of_memory() => false,
            Err(e) => return Err(e.into()),
        };
        probes.push((n, ok));
        Ok(ok)
    };
    let (mut good, mut bad) = (0usize, None);
    let mut n = 1usize;
    loop {
        let n_try = n.min(limit.max(1));
        if probe(n_try)? {
            good = n_try;
            if n_try >= limit {
                break;
            }
            n *= 2;
        } else {
            bad = Some(n_try);
            break;
        }
    }
    let hit_limit = bad.is_none();
    if let Some(mut hi) = bad {
        while hi - good > 1 {
            let mid = good + (hi - good) / 2;
            if probe(mid)? {
                good = mid;
            } else {
                hi = mid;
            }
        }
    }
    Ok(Search {
        max_batch: good,
        hit_limit,
        probes,
    })
}
