//! Decode steps replayed from a CUDA graph.
//!
//! A decode step is a few hundred kernel launches (and, for a shard, its all-reduces). Queued one
//! by one, each costs the host several microseconds of candle and driver work, and the GPU a gap
//! between kernels; with small shards (13B over four GPUs) the host becomes the bottleneck. Here
//! the step is captured once into a CUDA graph and then replayed with a single launch per step.
//!
//! Everything a step reads that changes from step to step lives on the device and is advanced by
//! the step itself: the input tokens (the previous step's sampled tokens, written in place), the
//! cache column, every sequence's rotary position and the sampling step. The kernels read the
//! column from the device ([`crate::model::Column::Device`]). Intermediate tensors are allocated and
//! freed inside the graph (stream-ordered allocation), so a replay allocates nothing.
//!
//! `WATTBENCH_CUDA_GRAPHS=0` turns graphs off. A capture that fails leaves nothing behind (a
//! captured step is not executed) and the steps go on one operation at a time.

use crate::model::{positions, KvCache, Llama};
use crate::sampling::Sampler;
use candle_core::{Device, Result, Tensor};
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::CudaGraph;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0: as `WATTBENCH_CUDA_GRAPHS` says; 1: on; 2: off.
static SETTING: AtomicU8 = AtomicU8::new(0);

/// Whether decode steps are captured in CUDA graphs: unless [`set_enabled`] said otherwise,
/// when `WATTBENCH_CUDA_GRAPHS` is not `0`.
pub fn enabled() -> bool {
    match SETTING.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => std::env::var("WATTBENCH_CUDA_GRAPHS").map_or(true, |v| v != "0"),
    }
}

/// Turns graphs on or off for the whole process, to compare the two ways in one run.
pub fn set_enabled(on: bool) {
    SETTING.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// The decode steps of a batch: the first run at once, the ones after it replayed from a CUDA
/// graph of the step (or, where capturing failed, run one operation at a time the same way).
pub struct DecodeGraph {
    graph: Option<CudaGraph>,
    /// Why there is no graph, if there is none.
    failure: Option<String>,
    /// u32 `[B]`: the tokens the next step reads, and the tokens it samples, in place.
    tokens: Tensor,
    // Read and moved on by every step.
    positions: Tensor,
    starts: Tensor,
    col: Tensor,
    step: Tensor,
}

impl DecodeGraph {
    /// Queues the decode step of `m` that reads `first` (u32 `[B]`, the tokens sampled by the
    /// prefill) and writes cache column `column` for sequences left-padded by `pads`, sampling
    /// with `sampler` from its next step on; then captures the same step one column on, which
    /// each [`DecodeGraph::replay`] runs for the next column. The tokens of every step are in
    /// [`DecodeGraph::tokens`] once it has run.
    ///
    /// The first step does what a first pass before the capture has to do in any case: candle
    /// uploads the shapes and strides of some operations from the host, which a graph cannot
    /// replay, and with its upload cache on the first step uploads them once and the capture
    /// reuses them. Doing it as the batch's first real step spares a batch one wasted step. A
    /// capture that fails executes nothing; the steps then run without a graph.
    pub fn start(
        m: &Llama,
        sampler: &Sampler,
        cache: &mut KvCache,
        first: &Tensor,
        pads: &[usize],
        column: usize,
    ) -> Result<DecodeGraph> {
        let Device::Cuda(dev) = &m.device else {
            candle_core::bail!("CUDA graphs need a CUDA device");
        };
        let b = pads.len();
        let starts: Vec<u32> = pads.iter().map(|&p| p as u32).collect();
        let mut g = DecodeGraph {
            graph: None,
            failure: None,
            tokens: first.copy()?,
            positions: positions(pads, 1, column, &m.device)?,
            starts: Tensor::from_vec(starts, b, &m.device)?,
            col: Tensor::from_vec(vec![column as u32], 1, &m.device)?,
            step: Tensor::from_vec(vec![sampler.next_step() as i64], 1, &m.device)?,
        };
        // (The state above was made before, so none of it is a cached upload.)
        let _uploads = dev.enable_cuda_graph_htod_cache();
        g.run(m, sampler, cache)?;
        // Capturing while the GPU still ran that step made the first replays after it slower
        // (bench/RESULTS.md), and whole batches no faster.
        m.device.synchronize()?;
        let stream = dev.cuda_stream();
        let captured = (|| -> Result<CudaGraph> {
            super::driver(
                stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            )?;
            let body = g.run(m, sampler, cache);
            // The capture ends whatever happened inside it.
            let ended = stream.end_capture(CUgraphInstantiate_flags(0));
            body?;
            super::driver(ended)?
                .ok_or_else(|| candle_core::Error::Msg("the captured decode step is empty".into()))
        })();
        match captured {
            Ok(graph) => g.graph = Some(graph),
            Err(e) => g.failure = Some(e.to_string().lines().next().unwrap_or("").to_string()),
        }
        Ok(g)
    }

    /// One decode step, queued operation by operation (or captured).
    fn run(&self, m: &Llama, sampler: &Sampler, cache: &mut KvCache) -> Result<()> {
        let b = self.tokens.elem_count();
        let input = self.tokens.reshape((b, 1))?;
        let logits = m.decode_at(&input, &self.positions, &self.starts, cache, &self.col)?;
        let next = sampler.sample_at(&logits, &self.step)?;
        self.tokens.slice_set(&next, 0, 0)?;
        super::layer::next_column(&self.col, &self.positions, Some(&self.step))
    }

    /// Queues the next decode step: a replay of the graph, or without one, the step's operations.
    pub fn replay(&self, m: &Llama, sampler: &Sampler, cache: &mut KvCache) -> Result<()> {
        match &self.graph {
            Some(graph) => super::driver(graph.launch()),
            None => self.run(m, sampler, cache),
        }
    }

    /// The tokens of the last step queued (u32 `[B]`), on the device.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }

    /// Why the step could not be captured, if it could not (steps then run without a graph).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}
