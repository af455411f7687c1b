//! `--mode allreduce --gpus N`: the all-reduce of a decode step over N GPUs through NCCL:
//! `[--batch, hidden]` bf16 values (what each attention output and MLP sums per step) for the
//! hidden sizes of the 7B, 13B and 65B shapes. Checks that every rank gets the same sums, then
//! times `--reps` all-reduces queued back to back on every GPU after a warm-up (GPU time per
//! all-reduce, per rank).

use crate::arg;
use candle_core::{DType, Tensor};
use cudarc::driver::sys::CUevent_flags;
use wattbench_engine::cuda::nccl::NcclGroup;
use wattbench_engine::parallel::AllReduce;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    Ok(measure(args).map_err(|e| e.to_string())?)
}

/// Runs `f(rank, device)` on every rank at once, one thread each.
fn on_every_rank<T: Send>(
    devices: &[candle_core::Device],
    f: impl Fn(usize, &candle_core::Device) -> Res<T> + Sync,
) -> Res<Vec<T>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(rank, d)| {
                let f = &f;
                s.spawn(move || f(rank, d))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    })
}

fn measure(args: &[String]) -> Res<()> {
    let gpus: usize = arg(args, "--gpus", "2").parse()?;
    let batch: usize = arg(args, "--batch", "64").parse()?;
    let reps: usize = arg(args, "--reps", "200").parse()?;
    let devices = wattbench_engine::device::cuda_devices(&(0..gpus).collect::<Vec<_>>())?;
    let group: std::sync::Arc<NcclGroup> = NcclGroup::new(&devices)?;
    for hidden in [4096usize, 5120, 8192] {
        // Values of every rank differ and are fixed.
        let input = |rank: usize, d: &candle_core::Device| -> Res<Tensor> {
            let mut rng = wattbench_workload::sample::SplitMix64::new(rank as u64 + 1);
            let v: Vec<f32> = (0..batch * hidden)
                .map(|_| (rng.unit() * 8.0 - 4.0) as f32)
                .collect();
            Ok(Tensor::from_vec(v, (batch, hidden), d)?.to_dtype(DType::BF16)?)
        };
        let sums = on_every_rank(&devices, |rank, d| {
            let s = group.sum(rank, &input(rank, d)?)?;
            Ok(s.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        })?;
        let same_on_every_rank = sums.iter().all(|s| s == &sums[0]);
        let us = on_every_rank(&devices, |rank, d| {
            let candle_core::Device::Cuda(cd) = d else {
                return Err("not a CUDA device".into());
            };
            let x = input(rank, d)?;
            for _ in 0..10 {
                group.sum(rank, &x)?;
            }
            let stream = cd.cuda_stream();
            let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
            let a = stream.record_event(flags)?;
            for _ in 0..reps {
                group.sum(rank, &x)?;
            }
            let b = stream.record_event(flags)?;
            Ok(a.elapsed_ms(&b)? as f64 * 1e3 / reps as f64)
        })?;
        println!(
            "{}",
            serde_json::json!({ "allreduce": { "gpus": gpus, "rows": batch, "hidden": hidden,
                "bytes": batch * hidden * 2, "same_on_every_rank": same_on_every_rank,
                "mean_us_per_rank": us } })
        );
    }
    Ok(())
}
