//! Temperature and top-p sampling of a batch of f32 or bf16 logits in one kernel (see
//! `sample.cu`).

use super::{driver, function};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

const SOURCE: &str = include_str!("sample.cu");

/// Threads of the block that samples one row.
const THREADS: u32 = 1024;

struct Sample {
    temperature: f64,
    top_p: f64,
    seed: u64,
    step: u64,
    /// The step on the device (i64 `[1]`), read by the kernel instead of `step` (a step
    /// replayed from a CUDA graph).
    step_on_device: u64,
    /// Keep each row's values in registers where the vocabulary fits.
    registers: bool,
}

impl CustomOp1 for Sample {
    fn name(&self) -> &'static str {
        "wattbench-sample"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the sampling kernel runs on CUDA only; this is a bug")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (b, v) = l.shape().dims2()?;
        if !l.is_contiguous() {
            candle_core::bail!("sampling expects contiguous logits, got {l:?}");
        }
        let dev = s.device.clone();
        // Vocabularies that fit 32 values per thread keep them in registers.
        let name = match (self.registers && v <= 32 * THREADS as usize, s.dtype()) {
            (true, DType::F32) => "sample_top_p_r32",
            (true, DType::BF16) => "sample_top_p_r32_bf16",
            (false, DType::F32) => "sample_top_p",
            (false, DType::BF16) => "sample_top_p_bf16",
            (_, other) => candle_core::bail!("sampling expects f32 or bf16 logits, got {other:?}"),
        };
        let func = function(&dev, "wattbench_sample", SOURCE, &[], name)?;
        let stream = dev.cuda_stream();
        // SAFETY: the kernel writes one token per row.
        let mut out = driver(unsafe { stream.alloc::<u32>(b) })?;
        let (v_i, inv_t, p) = (v as i32, (1.0 / self.temperature) as f32, self.top_p as f32);
        let cfg = LaunchConfig {
            grid_dim: (b as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let f32s;
        let bf16s;
        let mut a = stream.launch_builder(&func);
        if s.dtype() == DType::F32 {
            f32s = s.as_cuda_slice::<f32>()?.slice(l.start_offset()..);
            a.arg(&f32s);
        } else {
            bf16s = s.as_cuda_slice::<half::bf16>()?.slice(l.start_offset()..);
            a.arg(&bf16s);
        }
        a.arg(&mut out)
            .arg(&v_i)
            .arg(&inv_t)
            .arg(&p)
            .arg(&self.seed)
            .arg(&self.step)
            .arg(&self.step_on_device);
        // SAFETY: the arguments match the kernel; one block per row of `v` logits.
        driver(unsafe { a.launch(cfg) })?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(b)))
    }
}

/// One token per row of `logits [B, V]` (f32 or bf16, CUDA), as u32 `[B]` on the device: `step` and
/// `seed` pick the noise, so the same (seed, step, logits) give the same tokens. `step_on_device`
/// (i64 `[1]`), when given, replaces `step` with the value it holds when the kernel runs.
pub fn sample(
    logits: &Tensor,
    temperature: f64,
    top_p: f64,
    seed: u64,
    step: u64,
    step_on_device: Option<&Tensor>,
) -> Result<Tensor> {
    sample_with(logits, temperature, top_p, seed, step, step_on_device, true)
}

/// [`sample`], with (`registers`) or without the kernel that keeps each row's values in
/// registers (it serves vocabularies of up to 32,768): both give the same tokens.
pub fn sample_with(
    logits: &Tensor,
    temperature: f64,
    top_p: f64,
    seed: u64,
    step: u64,
    step_on_device: Option<&Tensor>,
    registers: bool,
) -> Result<Tensor> {
    if step_on_device.is_some_and(|s| s.dims() != [1] || s.dtype() != DType::I64) {
        candle_core::bail!(
            "sampling: the step on the device must be i64 [1], got {step_on_device:?}"
        );
    }
    let step_on_device = match step_on_device {
        Some(s) => super::address::<i64>(s)?,
        None => 0,
    };
    let (_, v) = logits.dims2()?;
    if !matches!(logits.dtype(), DType::F32 | DType::BF16) || v == 0 || v > i32::MAX as usize {
        candle_core::bail!("sampling expects f32 or bf16 logits [batch, vocab], got {logits:?}");
    }
    logits.contiguous()?.apply_op1_no_bwd(&Sample {
        temperature,
        top_p,
        seed,
        step,
        step_on_device,
        registers,
    })
}
