//! `--mode allreduce --gpus N`: how long the all-reduce of a decode step takes over N GPUs with
//! NCCL: `[--batch, hidden]` bf16 values (the size each attention output and MLP sums per step),
//! for the hidden sizes of the 7B, 13B and 65B shapes; median GPU time of `--reps` all-reduces
//! queued back to back on every GPU, after a warm-up.

use crate::arg;
use candle_core::{DType, Tensor};
use cudarc::driver::sys::CUevent_flags;
use wattbench_engine::parallel::AllReduce;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    Ok(measure(args).map_err(|e| e.to_string())?)
}

fn measure(args: &[String]) -> Res<()> {
    let gpus: usize = arg(args, "--gpus", "2").parse()?;
    let batch: usize = arg(args, "--batch", "64").parse()?;
    let reps: usize = arg(args, "--reps", "200").parse()?;
    let devices = wattbench_engine::device::cuda_devices(&(0..gpus).collect::<Vec<_>>())?;
    let group = wattbench_engine::cuda::nccl::NcclGroup::new(&devices)?;
    for hidden in [4096usize, 5120, 8192] {
        let per_rank: Vec<Res<f64>> = std::thread::scope(|s| {
            let handles: Vec<_> = devices
                .iter()
                .enumerate()
                .map(|(rank, d)| {
                    let group = group.clone();
                    s.spawn(move || -> Res<f64> {
                        let candle_core::Device::Cuda(cd) = d else {
                            return Err("not a CUDA device".into());
                        };
                        let x = Tensor::ones((batch, hidden), DType::BF16, d)?;
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
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
                .collect()
        });
        let us: Vec<f64> = per_rank.into_iter().collect::<Res<_>>()?;
        println!(
            "{}",
            serde_json::json!({ "allreduce": { "gpus": gpus, "rows": batch, "hidden": hidden,
                "bytes": batch * hidden * 2, "mean_us_per_rank": us } })
        );
    }
    Ok(())
}
