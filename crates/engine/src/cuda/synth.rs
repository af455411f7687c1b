//! Synthetic weights computed on the GPU that uses them (see [`crate::synthetic`] and
//! `synth.cu`): one kernel per stacked part, the same values as the CPU computes.

use super::{driver, function};
use crate::synthetic::{half_width, tensor_seed, Part, CHUNK_BITS};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

const SOURCE: &str = include_str!("synth.cu");
const MODULE: &str = "wattbench_synth";

struct Synth<'a> {
    parts: &'a [Part],
    seed: u64,
    dtype: DType,
}

impl Synth<'_> {
    /// Runs the kernel for every part into `out`, `[rows, cols]` of element type `T`.
    fn fill<T: cudarc::driver::DeviceRepr>(
        &self,
        dev: &candle_core::cuda::CudaDevice,
        out: &mut CudaSlice<T>,
        cols: usize,
    ) -> Result<()> {
        let defines = [format!("-DCHUNK_BITS={CHUNK_BITS}")];
        let func = function(dev, MODULE, SOURCE, &defines, "synth")?;
        let stream = dev.cuda_stream();
        let code: i32 = match self.dtype {
            DType::BF16 => 0,
            DType::F16 => 1,
            _ => 2,
        };
        let a = half_width();
        let mut out_row = 0i64;
        for p in self.parts {
            let rows = p.rows.len() as i64;
            let (scaled, scale) = match (p.scale, self.dtype) {
                (None, _) => (0i32, 0u32),
                (Some(s), DType::BF16) => (1, u32::from(half::bf16::from_f64(s).to_bits())),
                (Some(s), DType::F16) => (1, u32::from(half::f16::from_f64(s).to_bits())),
                (Some(s), _) => (1, (s as f32).to_bits()),
            };
            let total = rows as u64 * cols as u64;
            if total > 0 {
                let cfg = LaunchConfig {
                    grid_dim: (total.div_ceil(256).min(65_535 * 8) as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                let (cols_i, row0, col0, width) = (
                    cols as i64,
                    p.rows.start as i64,
                    p.cols.start as i64,
                    p.width as i64,
                );
                let tseed = tensor_seed(self.seed, p.tensor);
                let mut b = stream.launch_builder(&func);
                b.arg(&mut *out)
                    .arg(&code)
                    .arg(&out_row)
                    .arg(&rows)
                    .arg(&cols_i)
                    .arg(&row0)
                    .arg(&col0)
                    .arg(&width)
                    .arg(&tseed)
                    .arg(&a)
                    .arg(&scale)
                    .arg(&scaled);
                // SAFETY: the arguments match the kernel, which writes rows
                // out_row..out_row + rows of the [rows, cols] output of element type T.
                driver(unsafe { b.launch(cfg) })?;
            }
            out_row += rows;
        }
        Ok(())
    }
}

impl CustomOp1 for Synth<'_> {
    fn name(&self) -> &'static str {
        "wattbench-synth"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the synthetic-weight kernel runs on CUDA only; this is a bug")
    }

    fn cuda_fwd(&self, s: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = s.device.clone();
        let rows: usize = self.parts.iter().map(|p| p.rows.len()).sum();
        let cols = self.parts.first().map_or(0, |p| p.cols.len());
        let n = rows * cols;
        let stream = dev.cuda_stream();
        let storage = match self.dtype {
            DType::BF16 => {
                // SAFETY: the kernels write all rows * cols elements.
                let mut out = driver(unsafe { stream.alloc::<half::bf16>(n) })?;
                self.fill(&dev, &mut out, cols)?;
                CudaStorage::wrap_cuda_slice(out, dev)
            }
            DType::F16 => {
                // SAFETY: as above.
                let mut out = driver(unsafe { stream.alloc::<half::f16>(n) })?;
                self.fill(&dev, &mut out, cols)?;
                CudaStorage::wrap_cuda_slice(out, dev)
            }
            _ => {
                // SAFETY: as above.
                let mut out = driver(unsafe { stream.alloc::<f32>(n) })?;
                self.fill(&dev, &mut out, cols)?;
                CudaStorage::wrap_cuda_slice(out, dev)
            }
        };
        Ok((storage, Shape::from((rows, cols))))
    }
}

/// The matrix of `parts` stacked by rows, computed on the CUDA `device`.
pub fn matrix(
    parts: &[Part],
    seed: u64,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    Tensor::zeros(1, dtype, device)?.apply_op1_no_bwd(&Synth { parts, seed, dtype })
}
