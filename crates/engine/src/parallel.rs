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
use std::sync::{Arc, Condvar, Mutex};

/// Sums a tensor over the shards of a group; every shard calls it with its own `rank`, and every
/// shard gets the same sum back.
pub trait AllReduce: Send + Sync {
    fn sum(&self, rank: usize, t: &Tensor) -> Result<Tensor>;
    /// Shard `rank` failed: every shard waiting in an all-reduce now, or entering one later, gets
    /// an error instead of waiting forever for it.
    fn abort(&self, rank: usize, reason: &str);
}

/// What the other shards of an aborted group are told.
fn aborted(rank: usize, reason: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "stopped: shard {rank} of the group failed ({reason})"
    ))
}

/// Where a model is one shard of several.
#[derive(Clone)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
    pub group: Arc<dyn AllReduce>,
}

/// A barrier that an abort opens with an error.
struct Gate {
    world: usize,
    state: Mutex<GateState>,
    turn: Condvar,
}

struct GateState {
    arrived: usize,
    generation: u64,
    aborted: Option<(usize, String)>,
}

impl Gate {
    /// Waits for every shard; `Ok(true)` for the last to arrive.
    fn wait(&self) -> Result<bool> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rank, reason)) = &s.aborted {
            return Err(aborted(*rank, reason));
        }
        let generation = s.generation;
        s.arrived += 1;
        if s.arrived == self.world {
            s.arrived = 0;
            s.generation += 1;
            self.turn.notify_all();
            return Ok(true);
        }
        while s.generation == generation && s.aborted.is_none() {
            s = self.turn.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        match &s.aborted {
            Some((rank, reason)) if s.generation == generation => Err(aborted(*rank, reason)),
            _ => Ok(false),
        }
    }

    fn abort(&self, rank: usize, reason: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.aborted.is_none() {
            s.aborted = Some((rank, reason.to_string()));
        }
        self.turn.notify_all();
    }
}

/// Threads of one process as a group: each deposits its tensor and waits until all have; one of
/// them adds them up in rank order (so that the sum is the same bits on every run), and all take
/// the result.
pub struct LocalGroup {
    slots: Mutex<Vec<Option<Tensor>>>,
    result: Mutex<Option<Result<Tensor>>>,
    gate: Gate,
}

impl LocalGroup {
    pub fn new(world: usize) -> Arc<LocalGroup> {
        Arc::new(LocalGroup {
            slots: Mutex::new(vec![None; world]),
            result: Mutex::new(None),
            gate: Gate {
                world,
                state: Mutex::new(GateState {
                    arrived: 0,
                    generation: 0,
                    aborted: None,
                }),
                turn: Condvar::new(),
            },
        })
    }
}

impl AllReduce for LocalGroup {
    fn sum(&self, rank: usize, t: &Tensor) -> Result<Tensor> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())[rank] = Some(t.clone());
        if self.gate.wait()? {
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
        self.gate.wait()?;
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
        self.gate.wait()?;
        out
    }

    fn abort(&self, rank: usize, reason: &str) {
        self.gate.abort(rank, reason);
    }
}

/// Generates one batch on every shard at once, one thread each (the shards meet in their
/// all-reduces), and returns the first shard's result: every shard samples the same tokens from
/// the same logits. `on_token` sees the first shard's tokens.
///
/// A shard that fails aborts the group, so that the others stop at their next all-reduce instead
/// of waiting for it; the error returned is the failed shard's own.
pub fn generate_sharded(
    shards: &[&Llama],
    requests: &[Request],
    params: &GenerationParams,
    model_name: &str,
    memory_bytes: Option<u64>,
    on_token: &mut dyn FnMut(usize, u32),
) -> std::result::Result<BatchResult, EngineError> {
    let world = shards.len();
    let (first, rest) = shards.split_first().ok_or_else(|| EngineError::Shard {
        world: 0,
        message: "no shards to run".into(),
    })?;
    // The first shard to fail, which aborted the group.
    let failed: Mutex<Option<usize>> = Mutex::new(None);
    let run = |rank: usize, m: &Llama, on_token: &mut dyn FnMut(usize, u32)| {
        let r = generate(m, requests, params, model_name, memory_bytes, on_token);
        if let Err(e) = &r {
            let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
            // An error caused by another shard's abort is not a failure of this shard.
            if f.is_none() && !e.to_string().contains("of the group failed") {
                *f = Some(rank);
                if let Some(s) = m.group() {
                    s.group.abort(rank, &e.to_string());
                }
            }
        }
        r
    };
    let mut results: Vec<std::result::Result<BatchResult, EngineError>> = std::thread::scope(|s| {
        let others: Vec<_> = rest
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let run = &run;
                s.spawn(move || run(i + 1, m, &mut |_, _| {}))
            })
            .collect();
        let mine = run(0, first, on_token);
        let mut all = vec![mine];
        all.extend(others.into_iter().map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(EngineError::Shard {
                    world,
                    message: "a shard's thread panicked".into(),
                })
            })
        }));
        all
    });
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(rank) = failed {
        return Err(match results.swap_remove(rank) {
            Err(e) => e,
            Ok(_) => EngineError::Shard {
                world,
                message: format!("shard {rank} failed; this is a bug"),
            },
        });
    }
    let first = results.remove(0)?;
    for r in results {
        r?;
    }
    Ok(first)
}
