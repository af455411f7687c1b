//! Batched generation: prefill the left-padded prompts, then decode one token per sequence per
//! step until every sequence has met its end or its length. Prefill and decode are timed apart,
//! each timing ending when the device has delivered the sampled tokens.

use crate::error::EngineError;
use crate::model::{positions, KvCache, Llama};
use crate::sampling::Sampler;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::time::Instant;

/// One sequence to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub max_new_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// 0 for greedy decoding. The paper uses 0.8.
    pub temperature: f64,
    /// The paper uses 0.95.
    pub top_p: f64,
    pub seed: u64,
    /// Keep generating past end-of-sequence tokens, to fix the output length.
    pub ignore_eos: bool,
    pub eos_ids: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token was generated (it is included in the tokens).
    Eos,
    /// `max_new_tokens` were generated.
    Length,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchResult {
    pub outputs: Vec<Output>,
    /// Prompt processing and the first token of every sequence.
    pub prefill_s: f64,
    /// Every later token.
    pub decode_s: f64,
    pub decode_steps: usize,
    /// Longest prompt of the batch: every prompt is padded to it.
    pub padded_prompt_len: usize,
    /// Whether the decode steps were replayed from a CUDA graph.
    pub cuda_graph: bool,
}

/// A rough upper bound of the batch that fits, for out-of-memory messages: what is left of
/// `budget_bytes` after the weights (this shard's share of them), divided by one sequence's KV
/// cache and activations; no more than what the memory free now (`free_bytes`, with the weights
/// loaded and the failed allocation released) holds, where other processes use the GPU too.
fn suggest_batch(
    m: &Llama,
    tokens: usize,
    budget_bytes: Option<u64>,
    free_bytes: Option<u64>,
) -> usize {
    let per_seq = ((2
        * m.cfg.num_hidden_layers
        * m.kv_heads()
        * m.cfg.head_dim()
        * tokens
        * m.dtype.size_in_bytes()
        + 8 * m.cfg.hidden_size * tokens * 4) as u64)
        .max(1);
    let world = m.group().map_or(1, |s| s.world) as u64;
    let from_total = budget_bytes.map(|b| {
        let weights = m.cfg.parameters() * m.dtype.size_in_bytes() as u64 / world;
        b.saturating_sub(weights) / per_seq
    });
    let from_free = free_bytes.map(|f| f / per_seq);
    match (from_total, from_free) {
        (Some(t), Some(f)) => t.min(f).max(1) as usize,
        (Some(x), None) | (None, Some(x)) => x.max(1) as usize,
        (None, None) => 1,
    }
}

/// Whether a device error is an allocation failure (judged on the message, not the backtrace).
fn is_oom(e: &candle_core::Error) -> bool {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or("").to_ascii_lowercase();
    first.contains("out of memory")
        || first.contains("out_of_memory")
        || first.contains("cannot allocate")
}

/// Generates for `requests` in one batch. `on_token(sequence, token)` sees every token as it is
/// chosen (for streaming). `model_name` and `memory_bytes` only shape error messages.
pub fn generate(
    m: &Llama,
    requests: &[Request],
    params: &GenerationParams,
    model_name: &str,
    memory_bytes: Option<u64>,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<BatchResult, EngineError> {
    generate_steps(
        m,
        requests,
        params,
        model_name,
        memory_bytes,
        on_token,
        None,
    )
}

/// Whether `requests` fit as one batch: the full KV cache is allocated, the prompts are
/// prefilled and one decode step runs (the largest allocations of a batch); nothing more.
pub fn fits(
    m: &Llama,
    requests: &[Request],
    params: &GenerationParams,
    model_name: &str,
) -> Result<(), EngineError> {
    generate_steps(
        m,
        requests,
        params,
        model_name,
        None,
        &mut |_, _| {},
        Some(1),
    )
    .map(|_| ())
}

fn generate_steps(
    m: &Llama,
    requests: &[Request],
    params: &GenerationParams,
    model_name: &str,
    memory_bytes: Option<u64>,
    on_token: &mut dyn FnMut(usize, u32),
    max_steps: Option<usize>,
) -> Result<BatchResult, EngineError> {
    let b = requests.len();
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let max_new = requests.iter().map(|r| r.max_new_tokens).max().unwrap_or(0) as usize;
    let ctx = m.cfg.max_position_embeddings;
    for (i, r) in requests.iter().enumerate() {
        if r.prompt.is_empty() {
            return Err(EngineError::TooLong {
                index: i,
                tokens: 0,
                new: r.max_new_tokens as usize,
                context: ctx,
            });
        }
        if r.prompt.len() + r.max_new_tokens as usize > ctx {
            return Err(EngineError::TooLong {
                index: i,
                tokens: r.prompt.len(),
                new: r.max_new_tokens as usize,
                context: ctx,
            });
        }
        if let Some(&id) = r.prompt.iter().find(|&&t| t as usize >= m.cfg.vocab_size) {
            return Err(EngineError::BadToken {
                index: i,
                id,
                vocab: m.cfg.vocab_size,
            });
        }
    }
    let capacity = (longest + max_new).min(ctx.max(longest + max_new));
    let oom = |e: candle_core::Error| -> EngineError {
        if is_oom(&e) {
            EngineError::OutOfMemory {
                model: model_name.to_string(),
                batch: b,
                tokens: capacity,
                device: crate::device::device_name(&m.device),
                suggestion: suggest_batch(
                    m,
                    KvCache::columns_for(m, capacity),
                    memory_bytes.or_else(|| crate::device::memory_bytes(&m.device)),
                    crate::device::free_bytes(&m.device),
                )
                .min(b.saturating_sub(1).max(1)),
                message: e.to_string().lines().next().unwrap_or("").to_string(),
            }
        } else {
            EngineError::Candle(e)
        }
    };
    let pads: Vec<usize> = requests.iter().map(|r| longest - r.prompt.len()).collect();
    let mut flat = Vec::with_capacity(b * longest);
    for (r, &p) in requests.iter().zip(&pads) {
        flat.extend(std::iter::repeat_n(0u32, p));
        flat.extend_from_slice(&r.prompt);
    }
    let mut sampler = Sampler::new(params.temperature, params.top_p, params.seed, &m.device)?;
    let mut cache = KvCache::new(m, b, capacity).map_err(oom)?;
    let mut outputs: Vec<Output> = vec![
        Output {
            tokens: Vec::new(),
            finish: FinishReason::Length,
        };
        b
    ];
    let mut done = vec![false; b];
    let mut accept = |outputs: &mut Vec<Output>, done: &mut Vec<bool>, next: &[u32]| {
        for (i, &tok) in next.iter().enumerate() {
            if done[i] {
                continue;
            }
            outputs[i].tokens.push(tok);
            on_token(i, tok);
            if !params.ignore_eos && params.eos_ids.contains(&tok) {
                outputs[i].finish = FinishReason::Eos;
                done[i] = true;
            } else if outputs[i].tokens.len() >= requests[i].max_new_tokens as usize {
                done[i] = true;
            }
        }
    };
    for (i, r) in requests.iter().enumerate() {
        done[i] = r.max_new_tokens == 0;
    }

    let mut reader = Reader::new(&m.device, b)?;
    let t0 = Instant::now();
    let tokens = Tensor::from_vec(flat, (b, longest), &m.device)?;
    let logits = m
        .forward(
            &tokens,
            &positions(&pads, longest, 0, &m.device)?,
            &pads,
            &mut cache,
            0,
        )
        .map_err(oom)?;
    let mut next = sampler.sample_on_device(&logits).map_err(oom)?;
    let first = reader.start(&next)?;
    let first = reader.finish(first, b)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    if max_new > 0 {
        accept(&mut outputs, &mut done, &first);
    }
    // Decode steps are queued one ahead of the tokens the host has read: step s + 1 is queued
    // (fed step s's tokens on the device) before step s's tokens are read back, so the GPU never
    // waits for the host between steps. When every sequence has finished, the step queued ahead
    // is discarded; there are never more steps than the longest request needs.
    let needed = max_new
        .saturating_sub(1)
        .min(max_steps.unwrap_or(usize::MAX));
    let t1 = Instant::now();
    let graph = Graph::new(m, &sampler, &mut cache, &next, &pads, longest, needed);
    let mut steps = 0;
    let mut pending = None;
    // A captured step's first step is queued already.
    #[cfg(feature = "cuda")]
    if let Graph::Cuda(g) = &graph {
        sampler.skip(1);
        steps = 1;
        pending = Some(reader.start(g.tokens())?);
    }
    loop {
        if !done.iter().all(|&d| d) && steps < needed {
            let queued = match &graph {
                #[cfg(feature = "cuda")]
                Graph::Cuda(g) => {
                    g.replay(m, &sampler, &mut cache).map_err(oom)?;
                    sampler.skip(1);
                    reader.start(g.tokens())?
                }
                Graph::None => {
                    let offset = longest + steps;
                    let logits = m
                        .forward(
                            &next.reshape((b, 1))?,
                            &positions(&pads, 1, offset, &m.device)?,
                            &pads,
                            &mut cache,
                            offset,
                        )
                        .map_err(oom)?;
                    next = sampler.sample_on_device(&logits).map_err(oom)?;
                    reader.start(&next)?
                }
            };
            steps += 1;
            if let Some(t) = pending.replace(queued) {
                accept(&mut outputs, &mut done, &reader.finish(t, b)?);
            }
        } else if let Some(t) = pending.take() {
            accept(&mut outputs, &mut done, &reader.finish(t, b)?);
        } else {
            break;
        }
    }
    // The graph's memory goes back before the batch is reported done.
    let cuda_graph = graph.release();
    Ok(BatchResult {
        outputs,
        prefill_s,
        decode_s: t1.elapsed().as_secs_f64(),
        decode_steps: steps,
        padded_prompt_len: longest,
        cuda_graph,
    })
}

/// Reads sampled tokens back to the host: on CUDA through asynchronous copies into page-locked
/// memory, so that the next step can be queued before they arrive; elsewhere at once.
enum Reader {
    Direct,
    #[cfg(feature = "cuda")]
    Copies(crate::cuda::tokens::TokenCopies),
}

/// Tokens on their way to the host.
enum Ticket {
    Ready(Vec<u32>),
    #[cfg(feature = "cuda")]
    Copy(usize),
}

impl Reader {
    fn new(device: &Device, batch: usize) -> candle_core::Result<Reader> {
        #[cfg(feature = "cuda")]
        if device.is_cuda() {
            return Ok(Reader::Copies(crate::cuda::tokens::TokenCopies::new(
                device, batch,
            )?));
        }
        let _ = (device, batch);
        Ok(Reader::Direct)
    }

    fn start(&mut self, tokens: &Tensor) -> candle_core::Result<Ticket> {
        match self {
            Reader::Direct => Ok(Ticket::Ready(tokens.to_vec1::<u32>()?)),
            #[cfg(feature = "cuda")]
            Reader::Copies(c) => Ok(Ticket::Copy(c.start(tokens)?)),
        }
    }

    fn finish(&mut self, ticket: Ticket, batch: usize) -> candle_core::Result<Vec<u32>> {
        let _ = batch;
        match (self, ticket) {
            (_, Ticket::Ready(v)) => Ok(v),
            #[cfg(feature = "cuda")]
            (Reader::Copies(c), Ticket::Copy(i)) => c.finish(i, batch),
            #[cfg(feature = "cuda")]
            (Reader::Direct, Ticket::Copy(_)) => {
                candle_core::bail!("a token copy without copies; this is a bug")
            }
        }
    }
}

/// How decode steps are queued: replayed from a CUDA graph, or one operation at a time.
enum Graph {
    None,
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::graph::DecodeGraph),
}

impl Graph {
    /// Decode steps replayed from a CUDA graph where it applies (CUDA with the engine's kernels, a
    /// head dimension the fused attention serves, graphs on, at least two steps to run), the
    /// first of them queued already ([`crate::cuda::graph::DecodeGraph::start`]); otherwise, or if
    /// that first step fails, none.
    fn new(
        m: &Llama,
        sampler: &Sampler,
        cache: &mut KvCache,
        first: &Tensor,
        pads: &[usize],
        column: usize,
        steps: usize,
    ) -> Graph {
        #[cfg(feature = "cuda")]
        if m.kernels()
            && matches!(m.cfg.head_dim(), 64 | 128)
            && crate::cuda::graph::enabled()
            && steps >= 2
        {
            match crate::cuda::graph::DecodeGraph::start(m, sampler, cache, first, pads, column) {
                Ok(g) => {
                    if let Some(why) = g.failure() {
                        eprintln!(
                            "wattbench: decode steps run without a CUDA graph: capturing one failed ({why})"
                        );
                    }
                    return Graph::Cuda(g);
                }
                Err(e) => eprintln!(
                    "wattbench: decode steps run one operation at a time: the first failed ({})",
                    e.to_string().lines().next().unwrap_or("")
                ),
            }
        }
        let _ = (m, sampler, cache, first, pads, column, steps);
        Graph::None
    }

    /// Frees the graph; whether there was one.
    fn release(self) -> bool {
        match self {
            Graph::None => false,
            #[cfg(feature = "cuda")]
            Graph::Cuda(g) => g.failure().is_none(),
        }
    }
}
