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
//! captured step is not executed) and the caller goes on step by step.

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

/// One decode step of a batch, captured; each [`DecodeGraph::replay`] runs the next step.
pub struct DecodeGraph {
    graph: CudaGraph,
    /// u32 `[B]`: the tokens the next replay reads, and the tokens it samples, in place.
    tokens: Tensor,
    // Read by the graph's kernels: kept alive as long as the graph.
    _positions: Tensor,
    _starts: Tensor,
    _col: Tensor,
    _step: Tensor,
}

impl DecodeGraph {
    /// Captures the decode step of `m` that reads `first` (u32 `[B]`, the tokens sampled by the
    /// prefill) and writes cache column `column` for sequences left-padded by `pads`, sampling
    /// with `sampler` from its next step on. Nothing runs until the first replay.
    pub fn capture(
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
        let tokens = first.copy()?;
        let pos = positions(pads, 1, column, &m.device)?;
        let starts: Vec<u32> = pads.iter().map(|&p| p as u32).collect();
        let starts = Tensor::from_vec(starts, b, &m.device)?;
        let col = Tensor::from_vec(vec![column as u32], 1, &m.device)?;
        let step = Tensor::from_vec(vec![sampler.next_step() as i64], 1, &m.device)?;
        let input = tokens.reshape((b, 1))?;
        // candle uploads the shapes and strides of some operations from the host, which a graph
        // cannot replay: with its upload cache on, a first pass uploads them once and the capture
        // reuses them. (The state above was made before, so none of it is a cached upload.) The
        // first pass is the step itself minus moving on: it writes the keys and values that the
        // first replay writes again, the same ones.
        let _uploads = dev.enable_cuda_graph_htod_cache();
        {
            let logits = m.decode_at(&input, &pos, &starts, cache, &col)?;
            sampler.sample_at(&logits, &step)?;
        }
        super::layer::load_next_column(dev)?;
        m.device.synchronize()?;
        let stream = dev.cuda_stream();
        super::driver(
            stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
        )?;
        let body = (|| -> Result<()> {
            let logits = m.decode_at(&input, &pos, &starts, cache, &col)?;
            let next = sampler.sample_at(&logits, &step)?;
            tokens.slice_set(&next, 0, 0)?;
            super::layer::next_column(&col, &pos, Some(&step))
        })();
        // The capture ends whatever happened inside it.
        let ended = stream.end_capture(CUgraphInstantiate_flags(0));
        body?;
        let graph = super::driver(ended)?
            .ok_or_else(|| candle_core::Error::Msg("the captured decode step is empty".into()))?;
        Ok(DecodeGraph {
            graph,
            tokens,
            _positions: pos,
            _starts: starts,
            _col: col,
            _step: step,
        })
    }

    /// Queues the next decode step.
    pub fn replay(&self) -> Result<()> {
        super::driver(self.graph.launch())
    }

    /// The tokens of the last step queued (u32 `[B]`), on the device.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }
}
