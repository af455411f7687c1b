//! Tensor parallelism, Megatron-style: each of `world` shards holds its share of the attention
//! heads and of the MLP's columns; the attention output and MLP down projections produce partial
//! sums that an all-reduce adds up, so every shard continues with the full hidden state.
//!
//! [`AllReduce`] is the seam between the shards. [`LocalGroup`] adds tensors of threads of one
//! process (any device candle supports), which is how the sharding is checked against the
//! unsharded model on a machine without GPUs.

use crate::error::EngineError;
use crate::generate::{generate, BatchResult, GenerationParams, Request};
use crate::model::Llama;
use candle_core::{Result, Tensor};
use std::sync::{Arc, Barrier, Mutex};

/// Sums a tensor over the shards of a group; every shard calls it with its own `rank`, and every
/// shard gets the same sum back.
pub trait AllReduce: Send + Sync {
    fn sum(&self, rank: usize, t: &Tensor) -> Result<Tensor>;
}

/// Where a model is one shard of several.
#[derive(Clone)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
    pub group: Arc<dyn AllReduce>,
}

/// Threads of one process as a group: each deposits its tensor and waits until all have; one of
/// them adds them up in rank order (so that the sum is the same bits on every run), and all take
/// the result.
pub struct LocalGroup {
    slots: Mutex<Vec<Option<Tensor>>>,
    result: Mutex<Option<Result<Tensor>>>,
    barrier: Barrier,
}

impl LocalGroup {
    pub fn new(world: usize) -> Arc<LocalGroup> {
        Arc::new(LocalGroup {
            slots: Mutex::new(vec![None; world]),
            result: Mutex::new(None),
            barrier: Barrier::new(world),
        })
    }
}

impl AllReduce for LocalGroup {
    fn sum(&self, rank: usize, t: &Tensor) -> Result<Tensor> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())[rank] = Some(t.clone());
        if self.barrier.wait().is_leader() {
            let parts: Vec<Tensor> = self
                .slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter_mut()
                .map(|s| s.take())
                .collect::<Option<_>>()
                .unwrap_or_default();
            let total = parts
                .split_first()
                .ok_or_else(|| candle_core::Error::Msg("an all-reduce of no shards".into()))
                .and_then(|(first, rest)| rest.iter().try_fold(first.clone(), |acc, p| acc + p));
            *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(total);
        }
        self.barrier.wait();
        let out = match self
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(Ok(t)) => Ok(t.clone()),
            Some(Err(e)) => Err(candle_core::Error::Msg(format!("all-reduce: {e}"))),
            None => Err(candle_core::Error::Msg(
                "all-reduce: no result; this is a bug".into(),
            )),
        };
        // Nobody may start the next all-reduce before everyone has taken this one's result.
        self.barrier.wait();
        out
    }
}

/// Generates one batch on every shard at once, one thread each (the shards meet in their
/// all-reduces), and returns the first shard's result: every shard samples the same tokens from
/// the same logits. `on_token` sees the first shard's tokens.
///
/// A shard that fails before its first all-reduce of a step (allocating its cache, say) leaves
/// the others waiting for it; the shards allocate the same sizes, so they fail together.
pub fn generate_sharded(
    shards: &[&Llama],
    requests: &[Request],
    params: &GenerationParams,
    model_name: &str,
    memory_bytes: Option<u64>,
    on_token: &mut dyn FnMut(usize, u32),
) -> std::result::Result<BatchResult, EngineError> {
    let (first, rest) = shards.split_first().ok_or_else(|| EngineError::Shard {
        world: 0,
        message: "no shards to run".into(),
    })?;
    std::thread::scope(|s| {
        let others: Vec<_> = rest
            .iter()
            .map(|m| {
                s.spawn(move || {
                    generate(
                        m,
                        requests,
                        params,
                        model_name,
                        memory_bytes,
                        &mut |_, _| {},
                    )
                })
            })
            .collect();
        let mine = generate(first, requests, params, model_name, memory_bytes, on_token);
        let theirs: Vec<_> = others
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EngineError::Shard {
                        world: shards.len(),
                        message: "a shard's thread panicked".into(),
                    })
                })
            })
            .collect();
        let r = mine?;
        for t in theirs {
            t?;
        }
        Ok(r)
    })
}
