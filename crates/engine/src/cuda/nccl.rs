//! The all-reduce of tensor-parallel shards over the GPUs of one process, with NCCL: one
//! communicator per GPU, made together (`ncclCommInitAll`), each used by its shard's thread on
//! that thread's stream of the GPU.

use crate::parallel::AllReduce;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor,
};
use cudarc::nccl::safe::{Comm, ReduceOp};
use half::bf16;
use std::sync::{Arc, Mutex};

struct CommCell(Comm);

// SAFETY: NCCL lets a communicator be used from any thread, one call at a time; the Mutex around
// each cell gives that.
unsafe impl Send for CommCell {}

pub struct NcclGroup {
    /// None once the group is aborted (the communicator dropped, which aborts it).
    comms: Vec<Mutex<Option<CommCell>>>,
    aborted: Mutex<Option<(usize, String)>>,
}

impl NcclGroup {
    /// One communicator for each of `devices` (CUDA devices, in rank order).
    pub fn new(devices: &[Device]) -> Result<Arc<NcclGroup>> {
        let streams = devices
            .iter()
            .map(|d| match d {
                Device::Cuda(c) => Ok(c.cuda_stream()),
                other => candle_core::bail!("NCCL needs CUDA devices, not {:?}", other.location()),
            })
            .collect::<Result<Vec<_>>>()?;
        let comms = Comm::from_devices(streams).map_err(|e| {
            candle_core::Error::Msg(format!(
                "NCCL could not start over {} GPUs ({e:?}); check that libnccl.so.2 is on the loader's path and that the GPUs can reach each other",
                devices.len()
            ))
        })?;
        Ok(Arc::new(NcclGroup {
            comms: comms
                .into_iter()
                .map(|c| Mutex::new(Some(CommCell(c))))
                .collect(),
            aborted: Mutex::new(None),
        }))
    }
}

struct Sum<'a> {
    comm: &'a Comm,
}

impl CustomOp1 for Sum<'_> {
    fn name(&self) -> &'static str {
        "wattbench-nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL all-reduce runs on CUDA only; this is a bug")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        if !l.is_contiguous() {
            candle_core::bail!("all-reduce of a non-contiguous tensor {l:?}");
        }
        let n = l.shape().elem_count();
        let range = l.start_offset()..l.start_offset() + n;
        let dev = s.device.clone();
        let stream = dev.cuda_stream();
        let err = |e: cudarc::nccl::result::NcclError| {
            candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}"))
        };
        let out = match s.dtype() {
            DType::BF16 => {
                let src = s.as_cuda_slice::<bf16>()?.slice(range);
                // SAFETY: the all-reduce writes every element.
                let mut dst = unsafe { stream.alloc::<bf16>(n) }
                    .map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
                self.comm
                    .all_reduce(&src, &mut dst, &ReduceOp::Sum)
                    .map_err(err)?;
                CudaStorage::wrap_cuda_slice(dst, dev)
            }
            DType::F32 => {
                let src = s.as_cuda_slice::<f32>()?.slice(range);
                // SAFETY: the all-reduce writes every element.
                let mut dst = unsafe { stream.alloc::<f32>(n) }
                    .map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
                self.comm
                    .all_reduce(&src, &mut dst, &ReduceOp::Sum)
                    .map_err(err)?;
                CudaStorage::wrap_cuda_slice(dst, dev)
            }
            other => {
                candle_core::bail!("NCCL all-reduce of {other:?} is not supported; use bf16 or f32")
            }
        };
        Ok((out, l.shape().clone()))
    }
}

impl AllReduce for NcclGroup {
    fn sum(&self, rank: usize, t: &Tensor) -> Result<Tensor> {
        let cell = self.comms[rank].lock().unwrap_or_else(|e| e.into_inner());
        match cell.as_ref() {
            Some(c) => t.contiguous()?.apply_op1_no_bwd(&Sum { comm: &c.0 }),
            None => {
                let why = self.aborted.lock().unwrap_or_else(|e| e.into_inner());
                let (r, reason) = why.clone().unwrap_or((rank, "aborted".into()));
                candle_core::bail!("stopped: shard {r} of the group failed ({reason})")
            }
        }
    }

    /// Aborts every communicator (`ncclCommAbort`, through dropping it): all-reduces waiting on
    /// the GPUs for the failed shard end, and the next ones fail at once.
    fn abort(&self, rank: usize, reason: &str) {
        {
            let mut a = self.aborted.lock().unwrap_or_else(|e| e.into_inner());
            if a.is_none() {
                *a = Some((rank, reason.to_string()));
            }
        }
        for c in &self.comms {
            let taken = c.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(taken);
        }
    }
}
