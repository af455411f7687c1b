//! `--mode gemm`: the engine's few-row matrix products against cuBLAS, on CUDA.
//!
//! For the products of a decode step of `--model`'s shape (QKV, O, gate/up, down, output head)
//! at `--rows` (64,32) rows, times cuBLAS, what the engine's first-use tuning picks (and the times
//! it saw), and every configuration of `--bn` (64,128,256), `--wk` (1,2,4), `--stages` (3,4,6)
//! and splits (1 to 16); each kernel result is checked against an f32 product of the same
//! operands. One JSON line per shape and row count.

use crate::arg;
use candle_core::{DType, Device, Tensor, D};
use wattbench_engine::cuda::gemm::{gpu_ms, run as gemm, tune, Choice, GemmConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn list(args: &[String], name: &str, default: &str) -> Res<Vec<usize>> {
    Ok(arg(args, name, default)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?)
}

fn max_abs(a: &Tensor, b: &Tensor) -> Res<f32> {
    let d = (a.to_dtype(DType::F32)? - b)?;
    Ok(d.abs()?.flatten_all()?.max(D::Minus1)?.to_scalar::<f32>()?)
}

pub fn run(args: &[String]) -> Res<()> {
    let dev = Device::new_cuda(0)?;
    let reps: usize = arg(args, "--reps", "50").parse()?; // GPU-timed runs per measurement
    let (hidden, ffn, vocab) = match arg(args, "--model", "synthetic:llama-7b").as_str() {
        "synthetic:llama-13b" => (5120, 13824, 32000),
        _ => (4096, 11008, 32000),
    };
    let shapes = [
        ("qkv", 3 * hidden, hidden),
        ("o", hidden, hidden),
        ("gate_up", 2 * ffn, hidden),
        ("down", hidden, ffn),
        ("lm_head", vocab, hidden),
    ];
    for rows in list(args, "--rows", "64,32")? {
        for &(name, n, k) in &shapes {
            let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.02)?.to_dtype(DType::BF16)?;
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?.to_dtype(DType::BF16)?;
            let reference = x
                .to_dtype(DType::F32)?
                .matmul(&w.to_dtype(DType::F32)?.t()?)?;
            let magnitude = reference
                .abs()?
                .flatten_all()?
                .max(D::Minus1)?
                .to_scalar::<f32>()?;
            let gb = (n * k * 2) as f64 / 1e9;
            let wt = w.t()?;
            let cublas = gpu_ms(&x, &w, Choice::Cublas, reps)?;
            let cublas_diff = max_abs(&x.matmul(&wt)?, &reference)?;
            let (chosen, seen) = tune(&x, &w)?;
            let engine = gpu_ms(&x, &w, chosen, reps)?;
            let engine_diff = max_abs(&gemm(&x, &w, chosen)?, &reference)?;
            let seen: Vec<_> = seen
                .iter()
                .map(|(c, ms)| serde_json::json!({"choice": format!("{c:?}"), "ms": ms}))
                .collect();
            let mut tried = Vec::new();
            let mut best: Option<(f64, GemmConfig)> = None;
            let configs = (list(args, "--bn", "64,128,256")?.into_iter())
                .flat_map(|bn| {
                    list(args, "--wk", "1,2,4")
                        .unwrap()
                        .into_iter()
                        .map(move |wk| (bn, wk))
                })
                .flat_map(|(bn, wk)| {
                    list(args, "--stages", "3,4,6")
                        .unwrap()
                        .into_iter()
                        .map(move |st| (bn, wk, st))
                });
            for (bn, wk, stages) in configs {
                for splits in [1usize, 2, 3, 4, 6, 8, 12, 16] {
                    let c = GemmConfig {
                        bn,
                        wk,
                        stages,
                        splits,
                    };
                    if n % bn != 0 || splits > k / 64 / 2 || bn / 64 * wk > 8 {
                        continue;
                    }
                    let y = match gemm(&x, &w, Choice::Kernel(c)) {
                        Ok(y) => y,
                        Err(e) => {
                            let e = e.to_string();
                            let e = e.lines().next().unwrap_or_default();
                            tried.push(serde_json::json!({"config": format!("{c:?}"), "error": e}));
                            continue;
                        }
                    };
                    let diff = max_abs(&y, &reference)?;
                    let ms = gpu_ms(&x, &w, Choice::Kernel(c), reps)?;
                    tried.push(serde_json::json!({
                        "bn": bn, "wk": wk, "stages": stages, "splits": splits, "ms": ms,
                        "tb_per_s": gb / ms, "max_abs_diff": diff,
                    }));
                    if best.is_none_or(|(b, _)| ms < b) {
                        best = Some((ms, c));
                    }
                }
            }
            println!(
                "{}",
                serde_json::json!({
                    "gemm": name, "rows": rows, "n": n, "k": k, "weights_gb": gb,
                    "max_abs_reference": magnitude,
                    "cublas": {"ms": cublas, "tb_per_s": gb / cublas, "max_abs_diff": cublas_diff},
                    "chosen": {"choice": format!("{chosen:?}"), "ms": engine, "tb_per_s": gb / engine, "max_abs_diff": engine_diff, "tuning": seen},
                    "best": best.map(|(ms, c)| serde_json::json!({"config": format!("{c:?}"), "ms": ms, "tb_per_s": gb / ms})),
                    "tried": tried,
                })
            );
        }
    }
    Ok(())
}
