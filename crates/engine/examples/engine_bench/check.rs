//! `--mode check`: the engine's CUDA kernels against candle's own operations, on the GPU.

use crate::{arg, load};
use candle_core::{DType, Device, Tensor, D};
use wattbench_engine::model::{argmax, positions, KvCache};
use wattbench_engine::sampling::{top_p_mask, Sampler};
use wattbench_workload::sample::SplitMix64;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub fn run(args: &[String]) -> Res<()> {
    let report = serde_json::json!({
        "attention": attention()?,
        "attention_from_qkv": attention_from_qkv()?,
        "prefill_attention": prefill_attention()?,
        "gemm": gemm()?,
        "model": model(args)?,
        "sampling": sampling()?,
        "synthetic_weights": synthetic_weights()?,
    });
    println!("{}", serde_json::json!({ "check": report }));
    Ok(())
}

/// Synthetic weights computed on the GPU against the CPU's, bit for bit: a scaled part and a
/// part cut by columns (crossing streams' chunk boundaries), stacked, in every dtype.
fn synthetic_weights() -> Res<Vec<serde_json::Value>> {
    use wattbench_engine::synthetic::{matrix, Part};
    let gpu = Device::new_cuda(0)?;
    let parts = [
        Part {
            tensor: 2,
            rows: 3..43,
            cols: 0..3000,
            width: 3000,
            scale: Some(1.0 / 128f64.sqrt()),
        },
        Part {
            tensor: 3,
            rows: 0..40,
            cols: 500..3500,
            width: 40_000,
            scale: None,
        },
    ];
    let mut report = Vec::new();
    for dtype in [DType::BF16, DType::F16, DType::F32] {
        let bits = |t: Tensor| -> Res<Vec<u32>> {
            let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Ok(v.into_iter().map(f32::to_bits).collect())
        };
        let on_gpu = bits(matrix(&parts, 2026, dtype, &gpu)?.to_device(&Device::Cpu)?)?;
        let on_cpu = bits(matrix(&parts, 2026, dtype, &Device::Cpu)?)?;
        let differ = on_gpu.iter().zip(&on_cpu).filter(|(a, b)| a != b).count();
        report.push(serde_json::json!({
            "dtype": format!("{dtype:?}"), "elements": on_cpu.len(), "differ": differ,
        }));
    }
    Ok(report)
}

fn max_abs(a: &Tensor, b: &Tensor) -> Res<f32> {
    let d = (a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?;
    Ok(d.abs()?.flatten_all()?.max(D::Minus1)?.to_scalar::<f32>()?)
}

/// The cuBLASLt products (timed choice of algorithm) against an f32 product of the same bf16
/// operands, at decode shapes of the LLaMA-7B and 13B layers and an odd one.
fn gemm() -> Res<Vec<serde_json::Value>> {
    let dev = Device::new_cuda(0)?;
    let mut report = Vec::new();
    for &(rows, out, inner) in &[
        (64usize, 12288usize, 4096usize),
        (64, 4096, 11008),
        (256, 22016, 4096),
        (7, 1000, 576),
    ] {
        let x = Tensor::randn(0f32, 1.0, (rows, inner), &dev)?.to_dtype(DType::BF16)?;
        let w = Tensor::randn(0f32, 0.02, (out, inner), &dev)?.to_dtype(DType::BF16)?;
        let reference = x
            .to_dtype(DType::F32)?
            .matmul(&w.to_dtype(DType::F32)?.t()?)?;
        let lt = wattbench_engine::cuda::gemm::linear(&x, &w)?;
        let scale = reference
            .abs()?
            .flatten_all()?
            .max(D::Minus1)?
            .to_scalar::<f32>()?;
        report.push(serde_json::json!({
            "shape": [rows, out, inner],
            "max_abs_diff": max_abs(&lt, &reference)?,
            "max_abs": scale,
        }));
    }
    Ok(report)
}

/// The decode-attention kernel against matrix products and softmax in f32, on random bf16 inputs
/// with padding and grouped-query heads.
fn attention() -> Res<Vec<serde_json::Value>> {
    let dev = Device::new_cuda(0)?;
    let mut report = Vec::new();
    for &(b, nh, nkv, hd, cap, len) in &[
        (3usize, 8usize, 8usize, 128usize, 40usize, 33usize),
        (5, 9, 3, 64, 64, 50),
    ] {
        let k_full = Tensor::randn(0f32, 1.0, (b, nkv, cap, hd), &dev)?.to_dtype(DType::BF16)?;
        let v_full = Tensor::randn(0f32, 1.0, (b, nkv, cap, hd), &dev)?.to_dtype(DType::BF16)?;
        let q = Tensor::randn(0f32, 1.0, (b, nh, 1, hd), &dev)?.to_dtype(DType::BF16)?;
        let (k, v) = (k_full.narrow(2, 0, len)?, v_full.narrow(2, 0, len)?);
        let start: Vec<usize> = (0..b).map(|i| (i * 7) % (len / 2)).collect();
        let start_t = Tensor::from_vec(start.iter().map(|&s| s as u32).collect(), b, &dev)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let groups = nh / nkv;
        let mut rows = Vec::new();
        for (bi, &first) in start.iter().enumerate() {
            for h in 0..nh {
                let qh = q.narrow(0, bi, 1)?.narrow(1, h, 1)?;
                let qh = qh.to_dtype(DType::F32)?.reshape((1, hd))?;
                let part = |t: &Tensor| -> Res<Tensor> {
                    let t = t.narrow(0, bi, 1)?.narrow(1, h / groups, 1)?;
                    let t = t.narrow(2, first, len - first)?.to_dtype(DType::F32)?;
                    Ok(t.reshape((len - first, hd))?)
                };
                let (kh, vh) = (part(&k)?, part(&v)?);
                let att = (qh.matmul(&kh.t()?)? * f64::from(scale))?;
                rows.push(candle_nn::ops::softmax_last_dim(&att)?.matmul(&vh)?);
            }
        }
        let reference = Tensor::cat(&rows, 0)?.reshape((b, nh, 1, hd))?;
        let mut diffs = serde_json::Map::new();
        for unroll in [1u32, 2, 4, 8] {
            let fused = wattbench_engine::cuda::attention::decode_attention_unrolled(
                &q, &k, &v, &start_t, None, scale, unroll,
            )?;
            diffs.insert(
                format!("unroll_{unroll}"),
                max_abs(&fused, &reference)?.into(),
            );
        }
        report.push(serde_json::json!({
            "batch": b, "heads": nh, "kv_heads": nkv, "head_dim": hd, "len": len,
            "max_abs_diff": diffs,
        }));
    }
    Ok(report)
}

/// Decode attention straight from the fused QKV projection against the QKV split kernel followed
/// by the decode-attention kernel, on random bf16 inputs with padding, grouped-query heads and both
/// rotary layouts, the cache column given on the host and on the device: the outputs, and the
/// keys and values both write into the caches.
fn attention_from_qkv() -> Res<Vec<serde_json::Value>> {
    use wattbench_engine::cuda::attention::{decode_attention, decode_attention_qkv};
    use wattbench_engine::cuda::layer::{qkv_split, QkvSplit};
    use wattbench_engine::model::Column;
    let dev = Device::new_cuda(0)?;
    let rnd = |shape: &[usize]| -> Res<Tensor> {
        Ok(Tensor::randn(0f32, 1.0, shape, &dev)?.to_dtype(DType::BF16)?)
    };
    let mut report = Vec::new();
    for &(b, nh, nkv, hd, cap, c) in &[
        (3usize, 8usize, 8usize, 128usize, 40usize, 33usize),
        (5, 9, 3, 64, 64, 50),
    ] {
        for interleaved in [false, true] {
            let y = rnd(&[b, 1, (nh + 2 * nkv) * hd])?;
            let (cos, sin) = (rnd(&[128, hd / 2])?, rnd(&[128, hd / 2])?);
            let pos: Vec<u32> = (0..b as u32).map(|i| (c as u32 + 5 * i) % 128).collect();
            let pos = Tensor::from_vec(pos, (b, 1), &dev)?;
            let (k0, v0) = (rnd(&[b, nkv, cap, hd])?, rnd(&[b, nkv, cap, hd])?);
            let start: Vec<u32> = (0..b).map(|i| ((i * 7) % (c / 2)) as u32).collect();
            let start = Tensor::from_vec(start, b, &dev)?;
            let scale = 1.0 / (hd as f32).sqrt();
            let col = Tensor::from_vec(vec![c as u32], 1, &dev)?;
            let split = |k: &'_ Tensor, v: &'_ Tensor, column| -> Res<Tensor> {
                let s = QkvSplit {
                    cos: &cos,
                    sin: &sin,
                    positions: &pos,
                    k_cache: k,
                    v_cache: v,
                    column,
                    heads: nh,
                    kv_heads: nkv,
                    head_dim: hd,
                    interleaved,
                };
                Ok(decode_attention_qkv(&y, &s, &start, scale)?)
            };
            let (ka, va) = (k0.copy()?, v0.copy()?);
            let q = qkv_split(
                &y,
                &QkvSplit {
                    cos: &cos,
                    sin: &sin,
                    positions: &pos,
                    k_cache: &ka,
                    v_cache: &va,
                    column: Column::Host(c),
                    heads: nh,
                    kv_heads: nkv,
                    head_dim: hd,
                    interleaved,
                },
            )?;
            let two = decode_attention(
                &q,
                &ka.narrow(2, 0, c + 1)?,
                &va.narrow(2, 0, c + 1)?,
                &start,
                None,
                scale,
            )?;
            let mut row = serde_json::Map::new();
            for (way, on_device) in [("host_column", false), ("device_column", true)] {
                let (kb, vb) = (k0.copy()?, v0.copy()?);
                let column = if on_device {
                    Column::Device(&col)
                } else {
                    Column::Host(c)
                };
                let one = split(&kb, &vb, column)?;
                row.insert(
                    way.into(),
                    serde_json::json!({
                        "max_abs_diff": max_abs(&one, &two)?,
                        "keys_max_abs_diff": max_abs(&kb, &ka)?,
                        "values_max_abs_diff": max_abs(&vb, &va)?,
                    }),
                );
            }
            report.push(serde_json::json!({
                "batch": b, "heads": nh, "kv_heads": nkv, "head_dim": hd, "column": c,
                "interleaved": interleaved, "against_split_then_attention": row,
            }));
        }
    }
    Ok(report)
}

/// The prompt-attention kernel against attention computed on the host in f32 (causal, each
/// sequence from its first real column, a padding query seeing only itself), on random bf16
/// inputs with padding, grouped-query heads, prompt lengths that do not divide into the kernel's
/// tiles, and a prompt that starts after cached columns.
fn prefill_attention() -> Res<Vec<serde_json::Value>> {
    let dev = Device::new_cuda(0)?;
    let mut report = Vec::new();
    for &(b, nh, nkv, hd, t, offset) in &[
        (3usize, 8usize, 8usize, 128usize, 45usize, 0usize),
        (4, 9, 3, 64, 70, 0),
        (2, 4, 2, 128, 33, 17),
    ] {
        let cap = offset + t + 5;
        let k = Tensor::randn(0f32, 1.0, (b, nkv, cap, hd), &dev)?.to_dtype(DType::BF16)?;
        let v = Tensor::randn(0f32, 1.0, (b, nkv, cap, hd), &dev)?.to_dtype(DType::BF16)?;
        let q = Tensor::randn(0f32, 1.0, (b, nh, t, hd), &dev)?.to_dtype(DType::BF16)?;
        let start: Vec<usize> = (0..b).map(|i| (i * 11) % (offset + t / 2)).collect();
        let start_t = Tensor::from_vec(start.iter().map(|&s| s as u32).collect(), b, &dev)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let fused = wattbench_engine::cuda::attention::prefill_attention(
            &q, &k, &v, &start_t, offset, scale,
        )?;
        let host = |x: &Tensor| -> Res<Vec<f32>> {
            Ok(x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (qv, kv, vv, fv) = (host(&q)?, host(&k)?, host(&v)?, host(&fused)?);
        let mut worst = 0f32;
        for (bi, &first) in start.iter().enumerate() {
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let row = |x: &[f32], j: usize| {
                    let at = ((bi * nkv + kvh) * cap + j) * hd;
                    x[at..at + hd].to_vec()
                };
                for i in 0..t {
                    let col = offset + i;
                    let keys: Vec<usize> = if col < first {
                        vec![col]
                    } else {
                        (first..=col).collect()
                    };
                    let qa = ((bi * nh + h) * t + i) * hd;
                    let qr = &qv[qa..qa + hd];
                    let scores: Vec<f32> = keys
                        .iter()
                        .map(|&j| {
                            let kr = row(&kv, j);
                            scale * qr.iter().zip(&kr).map(|(a, c)| a * c).sum::<f32>()
                        })
                        .collect();
                    let mx = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let ex: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
                    let sum: f32 = ex.iter().sum();
                    let mut out = vec![0f32; hd];
                    for (&j, e) in keys.iter().zip(&ex) {
                        for (o, x) in out.iter_mut().zip(row(&vv, j)) {
                            *o += e / sum * x;
                        }
                    }
                    let fa = ((bi * t + i) * nh + h) * hd;
                    for (o, f) in out.iter().zip(&fv[fa..fa + hd]) {
                        worst = worst.max((o - f).abs());
                    }
                }
            }
        }
        report.push(serde_json::json!({
            "batch": b, "heads": nh, "kv_heads": nkv, "head_dim": hd, "prompt": t,
            "offset": offset, "starts": start, "max_abs_diff": worst,
        }));
    }
    Ok(report)
}

/// Whole-model logits and greedy tokens of a bf16 model with the kernels on and off: prefill of
/// left-padded prompts, then decode steps fed the same tokens on both paths.
fn model(args: &[String]) -> Res<serde_json::Value> {
    let (name, device, _, mut loaded) = load(args, "synthetic:smollm2-135m", "cuda", "bf16")?;
    let steps: usize = arg(args, "--steps", "8").parse()?;
    let vocab = loaded.model.cfg.vocab_size as u64;
    let mut rng = SplitMix64::new(7);
    let prompts: Vec<Vec<u32>> = [12usize, 7, 20]
        .iter()
        .map(|&n| (0..n).map(|_| rng.below(vocab) as u32).collect())
        .collect();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let flat: Vec<u32> = prompts
        .iter()
        .zip(&pads)
        .flat_map(|(p, &pad)| std::iter::repeat_n(0, pad).chain(p.iter().copied()))
        .collect();
    let b = prompts.len();
    let mut runs = Vec::new();
    let mut fed: Vec<Vec<u32>> = Vec::new();
    for on in [false, true] {
        loaded.model.use_kernels(on);
        let m = &loaded.model;
        let mut cache = KvCache::new(m, b, longest + steps + 1)?;
        let tokens = Tensor::from_vec(flat.clone(), (b, longest), &device)?;
        let mut logits = vec![m.forward(
            &tokens,
            &positions(&pads, longest, 0, &device)?,
            &pads,
            &mut cache,
            0,
        )?];
        for s in 0..steps {
            if !on {
                fed.push(argmax(&logits[s])?);
            }
            let offset = longest + s;
            let input = Tensor::from_vec(fed[s].clone(), (b, 1), &device)?;
            logits.push(m.forward(
                &input,
                &positions(&pads, 1, offset, &device)?,
                &pads,
                &mut cache,
                offset,
            )?);
        }
        runs.push((m.kernels(), logits));
    }
    let (candle, fused) = (&runs[0].1, &runs[1].1);
    let mut diffs = Vec::new();
    let mut same_argmax = 0;
    let mut scale = 0f32;
    for (a, f) in candle.iter().zip(fused) {
        diffs.push(max_abs(a, f)?);
        scale = scale.max(a.abs()?.flatten_all()?.max(D::Minus1)?.to_scalar::<f32>()?);
        same_argmax += argmax(a)?
            .iter()
            .zip(argmax(f)?)
            .filter(|(x, y)| **x == *y)
            .count();
    }
    Ok(serde_json::json!({
        "model": name,
        "kernels_used": runs[1].0,
        "steps": steps,
        "max_abs_logit": scale,
        "max_abs_diff_per_step": diffs,
        "same_argmax": same_argmax,
        "of": b * (steps + 1),
    }))
}

/// The sampling kernel: its frequencies against the truncated softmax over a small vocabulary,
/// and every draw over a LLaMA-sized vocabulary inside the top-p set computed by the tensor path.
fn sampling() -> Res<serde_json::Value> {
    let dev = Device::new_cuda(0)?;
    let rows = 20_000;
    let row = [2.0f32, 1.0, 0.0, -1.0];
    let logits = Tensor::from_vec(row.repeat(rows), (rows, 4), &dev)?;
    let mut s = Sampler::new(1.0, 0.9, 3, &dev)?;
    let mut counts = [0usize; 4];
    for t in s.sample(&logits)? {
        counts[t as usize] += 1;
    }
    // softmax = .644 .237 .087 .032: top-p 0.9 keeps the first three.
    let z = 0.6439 + 0.2369 + 0.0871;
    let want: Vec<f64> = vec![0.6439 / z, 0.2369 / z, 0.0871 / z, 0.0];
    let got: Vec<f64> = counts.iter().map(|&c| c as f64 / rows as f64).collect();
    let (b, v) = (64, 32_000);
    let big = (Tensor::randn(0f32, 1.0, (b, v), &dev)? * 3.0)?;
    let mut s = Sampler::new(0.8, 0.95, 5, &dev)?;
    let drawn = s.sample(&big)?;
    let probs = candle_nn::ops::softmax_last_dim(&(&big / 0.8)?)?;
    let keep = top_p_mask(&probs, 0.95)?.to_vec2::<u8>()?;
    let inside = drawn
        .iter()
        .enumerate()
        .filter(|(i, &t)| keep[*i][t as usize] == 1)
        .count();
    let again = Sampler::new(0.8, 0.95, 5, &dev)?.sample(&big)?;
    // The kernel that keeps a row in registers against the one that reads it on every pass, over
    // 256 rows at the paper's settings, at top-p 1 and greedy-like temperatures.
    use wattbench_engine::cuda::sample::sample_with;
    let rows256 = (Tensor::randn(0f32, 1.0, (256, v), &dev)? * 3.0)?;
    let mut same_kernels = Vec::new();
    // And bf16 logits (a decode step's, sampled as they are) against the same values in f32.
    let rows16 = rows256.to_dtype(candle_core::DType::BF16)?;
    let widened = rows16.to_dtype(candle_core::DType::F32)?;
    let mut same_bf16 = Vec::new();
    for (t, p) in [(0.8, 0.95), (1.0, 1.0), (0.05, 0.95)] {
        let a = sample_with(&rows256, t, p, 9, 4, None, true)?.to_vec1::<u32>()?;
        let b = sample_with(&rows256, t, p, 9, 4, None, false)?.to_vec1::<u32>()?;
        same_kernels.push(a.iter().zip(&b).filter(|(x, y)| x == y).count());
        for registers in [true, false] {
            let a = sample_with(&rows16, t, p, 9, 4, None, registers)?.to_vec1::<u32>()?;
            let b = sample_with(&widened, t, p, 9, 4, None, registers)?.to_vec1::<u32>()?;
            same_bf16.push(a.iter().zip(&b).filter(|(x, y)| x == y).count());
        }
    }
    Ok(serde_json::json!({
        "registers_kernel_same_tokens_of_256": same_kernels,
        "bf16_same_tokens_as_f32_of_256": same_bf16,
        "small_vocab_frequencies": got,
        "small_vocab_expected": want,
        "large_vocab_inside_top_p": inside,
        "of": b,
        "same_seed_same_tokens": again == drawn,
    }))
}
