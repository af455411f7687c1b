//! Sampled tokens on their way to the host without stopping the GPU: each step's tokens are
//! copied into page-locked memory asynchronously, behind the step's kernels, so the host can
//! queue the next step before it reads them.

use super::{driver, with_slice};
use candle_core::{Device, Result, Tensor};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, PinnedHostSlice};

/// Two page-locked buffers of `batch` tokens, used in turn: one being read while the next step's
/// copy fills the other. Each has its own event, recorded after its copy (the engine turns
/// cudarc's own event tracking off).
pub struct TokenCopies {
    buffers: [(PinnedHostSlice<u32>, CudaEvent); 2],
    next: usize,
}

impl TokenCopies {
    pub fn new(device: &Device, batch: usize) -> Result<TokenCopies> {
        let Device::Cuda(dev) = device else {
            candle_core::bail!("token copies are for CUDA devices")
        };
        let ctx = dev.cuda_stream().context().clone();
        let alloc = || -> Result<(PinnedHostSlice<u32>, CudaEvent)> {
            // SAFETY: a buffer is read only after a copy into it has completed.
            let b = driver(unsafe { ctx.alloc_pinned_with_flags::<u32>(batch.max(1), 0) })?;
            let e = driver(ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING)))?;
            Ok((b, e))
        };
        Ok(TokenCopies {
            buffers: [alloc()?, alloc()?],
            next: 0,
        })
    }

    /// Queues the copy of `tokens` (u32 `[batch]` on this GPU) and returns which buffer it fills.
    pub fn start(&mut self, tokens: &Tensor) -> Result<usize> {
        let i = self.next;
        self.next = 1 - i;
        let (buffer, done) = &mut self.buffers[i];
        with_slice::<u32, _>(tokens, |view, dev| {
            let stream = dev.cuda_stream();
            driver(stream.memcpy_dtoh(view, buffer))?;
            driver(done.record(&stream))
        })?;
        Ok(i)
    }

    /// The tokens of the copy into buffer `i`, waiting for it to complete.
    pub fn finish(&mut self, i: usize, batch: usize) -> Result<Vec<u32>> {
        let (buffer, done) = &self.buffers[i];
        driver(done.synchronize())?;
        let data = driver(buffer.as_slice())?;
        Ok(data[..batch].to_vec())
    }
}
