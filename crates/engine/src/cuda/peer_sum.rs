//! The all-reduce of a decode step through peer memory: one kernel per rank, no NCCL (see
//! `peer_sum.cu`). A decode step's sums are small (64 × 8,192 bf16 values, 1 MB, for the 65B
//! shape at batch 64), where NCCL's all-reduce over four NVLink-connected H100s takes ~30 µs,
//! mostly latency; 160 of them are a fifth of a 65B decode step. Here each rank copies its
//! values into a buffer its peers read directly over NVLink, so the sum costs one barrier and the
//! reads.
//!
//! It serves bf16 sums of up to [`CAPACITY_BYTES`] where every pair of GPUs can reach each other's
//! memory; everything else (prefill, f32, GPUs without peer access) goes through NCCL.
//! `WATTBENCH_PEER_SUM=0` turns it off.

use super::{driver, function};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Result, Shape};
use cudarc::driver::sys::{self, CUdeviceptr};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use half::bf16;

const SOURCE: &str = include_str!("peer_sum.cu");
const MODULE: &str = "wattbench_peer_sum";
/// The largest sum (bytes) that goes through peer memory.
pub const CAPACITY_BYTES: usize = 8 << 20;
/// Blocks of every call (the flags are per block).
const BLOCKS: usize = 64;
const MAX_RANKS: usize = 8;

/// Memory from `cuMemAlloc` (which peers can map once peer access is on, unlike pool memory).
struct Shared {
    ptr: CUdeviceptr,
    ctx: std::sync::Arc<cudarc::driver::CudaContext>,
}

impl Shared {
    fn zeroed(ctx: &std::sync::Arc<cudarc::driver::CudaContext>, bytes: usize) -> Result<Shared> {
        driver(ctx.bind_to_thread())?;
        // SAFETY: a plain allocation in the bound context, zeroed before anyone reads it.
        let ptr = driver(unsafe { cudarc::driver::result::malloc_sync(bytes) })?;
        let shared = Shared {
            ptr,
            ctx: ctx.clone(),
        };
        // SAFETY: `ptr` holds `bytes` bytes.
        driver(unsafe { cudarc::driver::result::memset_d8_sync(ptr, 0, bytes) })?;
        Ok(shared)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: allocated by `malloc_sync` in this context; every kernel using it has ended
        // (the group is dropped after its shards' work).
        let _ = unsafe { cudarc::driver::result::free_sync(self.ptr) };
    }
}

struct Rank {
    _data: Shared,
    _flags: Shared,
    /// Every rank's data then flags addresses, on this rank's GPU.
    table: CudaSlice<u64>,
    /// Calls made, per block.
    counters: CudaSlice<u32>,
}

/// Buffers of every rank of a group for sums through peer memory.
pub struct PeerSum {
    ranks: Vec<Rank>,
}

// SAFETY: the device memory is only touched by kernels queued on each rank's stream; the host
// side is immutable after `new`.
unsafe impl Send for PeerSum {}
unsafe impl Sync for PeerSum {}

impl PeerSum {
    /// Buffers for a group over `devices`, or `None` where it does not apply (one GPU, more than
    /// eight, a pair of GPUs without peer access, or `WATTBENCH_PEER_SUM=0`).
    pub fn new(devices: &[Device]) -> Result<Option<PeerSum>> {
        let world = devices.len();
        if !(2..=MAX_RANKS).contains(&world)
            || std::env::var("WATTBENCH_PEER_SUM").is_ok_and(|v| v == "0")
        {
            return Ok(None);
        }
        let mut ctxs = Vec::with_capacity(world);
        for d in devices {
            let Device::Cuda(c) = d else {
                return Ok(None);
            };
            ctxs.push(c.cuda_stream().context().clone());
        }
        for a in &ctxs {
            for b in &ctxs {
                if a.ordinal() == b.ordinal() {
                    continue;
                }
                let mut can = 0i32;
                // SAFETY: plain queries of two devices.
                driver(unsafe {
                    sys::cuDeviceCanAccessPeer(&mut can, a.cu_device(), b.cu_device()).result()
                })?;
                if can == 0 {
                    return Ok(None);
                }
            }
        }
        for a in &ctxs {
            driver(a.bind_to_thread())?;
            for b in &ctxs {
                if a.ordinal() == b.ordinal() {
                    continue;
                }
                // SAFETY: `a` is current; enabling access to `b`'s memory twice is reported and
                // harmless.
                let r = unsafe { sys::cuCtxEnablePeerAccess(b.cu_ctx(), 0) };
                if r != sys::CUresult::CUDA_SUCCESS
                    && r != sys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED
                {
                    return Ok(None);
                }
            }
        }
        let data: Vec<Shared> = ctxs
            .iter()
            .map(|c| Shared::zeroed(c, 2 * CAPACITY_BYTES))
            .collect::<Result<_>>()?;
        let flags: Vec<Shared> = ctxs
            .iter()
            .map(|c| Shared::zeroed(c, BLOCKS * MAX_RANKS * 4))
            .collect::<Result<_>>()?;
        let table: Vec<u64> = data.iter().chain(&flags).map(|s| s.ptr).collect();
        let mut ranks = Vec::with_capacity(world);
        for ((d, data), flags) in devices.iter().zip(data).zip(flags) {
            let Device::Cuda(c) = d else {
                unreachable!("checked above")
            };
            let stream = c.cuda_stream();
            let table = driver(stream.clone_htod(&table))?;
            let counters = driver(stream.alloc_zeros::<u32>(BLOCKS))?;
            ranks.push(Rank {
                _data: data,
                _flags: flags,
                table,
                counters,
            });
        }
        for d in devices {
            d.synchronize()?;
        }
        Ok(Some(PeerSum { ranks }))
    }

    /// The sum over the group of rank `rank`'s `t`, or `None` where `t` is not a contiguous bf16
    /// tensor of at most [`CAPACITY_BYTES`] in whole 16-byte vectors (NCCL takes those). Every
    /// rank must call it with the same shape, in the same order.
    pub fn sum(&self, rank: usize, t: &candle_core::Tensor) -> Result<Option<candle_core::Tensor>> {
        let n = t.elem_count();
        if t.dtype() != DType::BF16
            || !t.is_contiguous()
            || n * 2 > CAPACITY_BYTES
            || !n.is_multiple_of(8)
            || n == 0
        {
            return Ok(None);
        }
        let op = Sum { rank, group: self };
        t.apply_op1_no_bwd(&op).map(Some)
    }
}

struct Sum<'a> {
    rank: usize,
    group: &'a PeerSum,
}

impl CustomOp1 for Sum<'_> {
    fn name(&self) -> &'static str {
        "wattbench-peer-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the peer all-reduce runs on CUDA only; this is a bug")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let n = l.shape().elem_count();
        let dev = s.device.clone();
        let input = s.as_cuda_slice::<bf16>()?.slice(l.start_offset()..);
        if !l.start_offset().is_multiple_of(8) {
            candle_core::bail!("peer all-reduce: the input does not start on a 16-byte boundary");
        }
        let func = function(&dev, MODULE, SOURCE, &[], "peer_sum")?;
        let stream = dev.cuda_stream();
        // SAFETY: the kernel writes all n elements.
        let mut out = driver(unsafe { stream.alloc::<bf16>(n) })?;
        let r = &self.group.ranks[self.rank];
        let world = self.group.ranks.len() as i32;
        let (rank, n_vec, cap_vec) = (
            self.rank as i32,
            (n / 8) as i64,
            (CAPACITY_BYTES / 16) as i64,
        );
        let cfg = LaunchConfig {
            grid_dim: (BLOCKS as u32, 1, 1),
            block_dim: (512, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(&func);
        b.arg(&input)
            .arg(&mut out)
            .arg(&r.table)
            .arg(&r.counters)
            .arg(&rank)
            .arg(&world)
            .arg(&n_vec)
            .arg(&cap_vec);
        // SAFETY: the arguments match the kernel; n elements fit every rank's halves (checked by
        // the caller), and every rank runs the same calls in the same order.
        driver(unsafe { b.launch(cfg) })?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), l.shape().clone()))
    }
}
