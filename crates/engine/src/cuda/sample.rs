//! Temperature and top-p sampling of a batch of f32 logits in one kernel (see `sample.cu`).

use super::{driver, function, with_slice};
use candle_core::{DType, Result, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

const SOURCE: &str = include_str!("sample.cu");

/// One token per row of `logits [B, V]` (f32, CUDA): `step` and `seed` pick the noise, so the
/// same (seed, step, logits) give the same tokens.
pub fn sample(
    logits: &Tensor,
    temperature: f64,
    top_p: f64,
    seed: u64,
    step: u64,
) -> Result<Vec<u32>> {
    let (b, v) = logits.dims2()?;
    if logits.dtype() != DType::F32 || v == 0 || v > i32::MAX as usize {
        candle_core::bail!("sampling expects f32 logits [batch, vocab], got {logits:?}");
    }
    let logits = logits.contiguous()?;
    let out = with_slice::<f32, _>(&logits, |l, dev| {
        let func = function(dev, "wattbench_sample", SOURCE, &[], "sample_top_p")?;
        let stream = dev.cuda_stream();
        // SAFETY: the kernel writes one token per row.
        let mut out = driver(unsafe { stream.alloc::<u32>(b) })?;
        let (v_i, inv_t, p) = (v as i32, (1.0 / temperature) as f32, top_p as f32);
        let cfg = LaunchConfig {
            grid_dim: (b as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        let stream = dev.cuda_stream();
        let mut a = stream.launch_builder(&func);
        a.arg(l)
            .arg(&mut out)
            .arg(&v_i)
            .arg(&inv_t)
            .arg(&p)
            .arg(&seed)
            .arg(&step);
        // SAFETY: the arguments match the kernel; one block per row of `v` logits.
        driver(unsafe { a.launch(cfg) })?;
        driver(stream.clone_dtoh(&out))
    })?;
    Ok(out)
}
