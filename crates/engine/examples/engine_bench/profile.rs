//! `--mode profile`: where the time of a decode step goes, on CUDA.
//!
//! At batch `--batch` (64) and cache column `--at` (256, the middle of the peer workload), times
//! (after a synchronize) the whole decode step, the forward pass alone, the host's share of it
//! (time until `forward` returns, before the device finishes), sampling, and the matrix products
//! and decode attention alone, and the step replayed from a CUDA graph; and a prefill of
//! `--prompt-len` tokens per sequence, whole and in parts (matrix products, attention, the fused
//! element-wise kernels), on random inputs. Means over `--reps` repetitions. `in_graph`: the
//! layers' products (in a decode step's order), decode attention and element-wise kernels, each
//! kind replayed alone from a CUDA graph — what each costs inside a captured step — and the
//! attention over the layers' own caches (`--capacity` columns, 384 by default: a prompt of 128
//! and 256 new tokens), the products and that attention in a step's order, each kind's products
//! alone, the output head with sampling, and the attention over one cache of each capacity in
//! `--capacities` (a list). `gemm_choices`: the cuBLASLt algorithm chosen for each product shape.
//! `cache_capacity` is the columns the caches got ([`KvCache::columns_for`]).

use crate::{arg, load};
use candle_core::Tensor;
use std::time::Instant;
use wattbench_engine::model::{positions, GateUp, KvCache, Linear, Qkv};
use wattbench_engine::sampling::Sampler;

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) fn timed(
    reps: usize,
    dev: &candle_core::Device,
    mut f: impl FnMut() -> Res<()>,
) -> Res<(f64, f64)> {
    f()?;
    dev.synchronize()?;
    let (mut total, mut host) = (0.0, 0.0);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        host += t.elapsed().as_secs_f64();
        dev.synchronize()?;
        total += t.elapsed().as_secs_f64();
    }
    Ok((1e3 * total / reps as f64, 1e3 * host / reps as f64))
}

/// `body` (after one run outside it) captured into a CUDA graph.
pub(crate) fn capture(
    cd: &candle_core::cuda::CudaDevice,
    body: &dyn Fn() -> Res<()>,
) -> Res<cudarc::driver::CudaGraph> {
    let dev = candle_core::Device::Cuda(cd.clone());
    body()?;
    dev.synchronize()?;
    let stream = cd.cuda_stream();
    stream.begin_capture(
        cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
    )?;
    let ran = body();
    let graph = stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))?;
    ran?;
    Ok(graph.ok_or("empty graph")?)
}

/// Mean time of `body` replayed from a CUDA graph (after one run outside it).
fn graph_ms(
    reps: usize,
    cd: &candle_core::cuda::CudaDevice,
    body: Box<dyn Fn() -> Res<()> + '_>,
) -> Res<f64> {
    let graph = capture(cd, &*body)?;
    let dev = candle_core::Device::Cuda(cd.clone());
    Ok(timed(reps, &dev, || Ok(graph.launch()?))?.0)
}

/// Picks one kind of a layer's weights, where the layer holds it as one dense matrix.
pub(crate) type Pick = fn(&wattbench_engine::model::Layer) -> Option<&Tensor>;

/// The four kinds of a layer's products, in a decode step's order: name, weights, and whether
/// the product reads the feed-forward width (the down projection) rather than the hidden one.
pub(crate) fn kinds() -> [(&'static str, Pick, bool); 4] {
    [
        (
            "qkv",
            |l| match &l.qkv {
                Qkv::Fused(w) => Some(w),
                _ => None,
            },
            false,
        ),
        (
            "o",
            |l| match &l.wo {
                Linear::Dense(w) => Some(w),
                _ => None,
            },
            false,
        ),
        (
            "gate_up",
            |l| match &l.gate_up {
                GateUp::Fused(w) => Some(w),
                _ => None,
            },
            false,
        ),
        (
            "down",
            |l| match &l.w_down {
                Linear::Dense(w) => Some(w),
                _ => None,
            },
            true,
        ),
    ]
}

pub fn run(args: &[String]) -> Res<()> {
    let (name, dev, _, loaded) = load(args, "synthetic:llama-7b", "cuda", "auto")?;
    let m = &loaded.model;
    let b: usize = arg(args, "--batch", "64").parse()?;
    let at: usize = arg(args, "--at", "256").parse()?;
    let reps: usize = arg(args, "--reps", "20").parse()?;
    // The cache's columns: a prompt of 128 and 256 new tokens (the peer workload) unless
    // `--capacity` says otherwise, and long enough for the graph's replays below, which move on
    // one column each.
    let capacity: usize = arg(args, "--capacity", "384").parse()?;
    let pads = vec![0usize; b];
    let mut cache = KvCache::new(m, b, capacity.max(at + reps + 4))?;
    let input = Tensor::from_vec((0..b as u32).map(|i| 3 + i).collect(), (b, 1), &dev)?;
    let pos = positions(&pads, 1, at, &dev)?;
    let mut sampler = Sampler::new(0.8, 0.95, 0, &dev)?;
    let logits = m.forward(&input, &pos, &pads, &mut cache, at)?;
    let (step, step_host) = timed(reps, &dev, || {
        let l = m.forward(&input, &pos, &pads, &mut cache, at)?;
        sampler.sample(&l)?;
        Ok(())
    })?;
    let (fwd, fwd_host) = timed(reps, &dev, || {
        m.forward(&input, &pos, &pads, &mut cache, at)?;
        Ok(())
    })?;
    let (sample, _) = timed(reps, &dev, || {
        sampler.sample(&logits)?;
        Ok(())
    })?;
    // The sampling kernel that reads the logits on every bisection pass, for comparison.
    let (sample_uncached, _) = timed(reps, &dev, || {
        wattbench_engine::cuda::sample::sample_with(&logits, 0.8, 0.95, 0, 1, None, false)?;
        Ok(())
    })?;
    let prefill = crate::prefill::run(args, m, &mut cache, &mut sampler, reps.min(5))?;
    let hidden = m.cfg.hidden_size;
    let h = Tensor::zeros((b, 1, hidden), m.dtype, &dev)?;
    let a = Tensor::zeros((b, 1, m.cfg.intermediate_size), m.dtype, &dev)?;
    let bytes = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as f64;
    // Each matrix product of the layers (all layers) and the output head, alone.
    let mut products = serde_json::Map::new();
    let mut matmuls = 0.0;
    let kinds = kinds();
    // With the engine's choice of products (cuBLASLt with a timed algorithm, where it applies),
    // and with candle's cuBLAS call.
    let lt = wattbench_engine::cuda::gemm::enabled();
    for (kind, pick, wide) in kinds {
        let ws: Vec<&Tensor> = m.layers.iter().filter_map(pick).collect();
        let x = if wide { &a } else { &h };
        let gb: f64 = ws.iter().map(|w| bytes(w)).sum::<f64>() / 1e9;
        let mut entry = serde_json::Map::new();
        for (way, on) in [("ms", lt), ("cublas_ms", false)] {
            wattbench_engine::cuda::gemm::set_enabled(on);
            let (ms, _) = timed(reps, &dev, || {
                for w in &ws {
                    Linear::dense(x, w)?;
                }
                Ok(())
            })?;
            if way == "ms" {
                matmuls += ms;
                entry.insert("gb_per_s".into(), (gb / ms * 1e3).into());
            }
            entry.insert(way.into(), ms.into());
        }
        wattbench_engine::cuda::gemm::set_enabled(lt);
        products.insert(kind.into(), entry.into());
    }
    if let Linear::Dense(w) = &m.lm_head {
        let (ms, _) = timed(reps, &dev, || {
            Linear::dense(&h, w)?;
            Ok(())
        })?;
        matmuls += ms;
        let gb = bytes(w) / 1e9;
        products.insert(
            "lm_head".into(),
            serde_json::json!({ "ms": ms, "gb_per_s": gb / ms * 1e3 }),
        );
    }
    let (nh, nkv, hd) = (
        m.cfg.num_attention_heads,
        m.cfg.kv_heads(),
        m.cfg.head_dim(),
    );
    let q = Tensor::randn(0f32, 1.0, (b, nh, 1, hd), &dev)?.to_dtype(m.dtype)?;
    let kc = Tensor::randn(0f32, 1.0, (b, nkv, at + 1, hd), &dev)?.to_dtype(m.dtype)?;
    let vc = Tensor::randn(0f32, 1.0, (b, nkv, at + 1, hd), &dev)?.to_dtype(m.dtype)?;
    let starts = Tensor::zeros(b, candle_core::DType::U32, &dev)?;
    let kv_bytes = 2 * m.cfg.num_hidden_layers * b * nkv * (at + 1) * hd * m.dtype.size_in_bytes();
    let mut attention_ms = serde_json::Map::new();
    let mut attention = f64::NAN;
    for unroll in [1u32, 2, 4, 8] {
        let (ms, _) = timed(reps, &dev, || {
            for _ in &m.layers {
                wattbench_engine::cuda::attention::decode_attention_unrolled(
                    &q, &kc, &vc, &starts, None, 1.0, unroll,
                )?;
            }
            Ok(())
        })?;
        if unroll == wattbench_engine::cuda::attention::UNROLL {
            attention = ms;
        }
        attention_ms.insert(
            format!("unroll_{unroll}"),
            serde_json::json!({ "ms": ms, "gb_per_s": kv_bytes as f64 / ms / 1e6 }),
        );
    }
    // The products and the attention of all layers in the order a decode step runs them,
    // replayed from CUDA graphs (no other kernels between them): what they cost inside a step.
    let mut in_graph = serde_json::Map::new();
    if let candle_core::Device::Cuda(cd) = &dev {
        let qkv_w: Vec<&Tensor> = m.layers.iter().filter_map(kinds[0].1).collect();
        let o_w: Vec<&Tensor> = m.layers.iter().filter_map(kinds[1].1).collect();
        let gu_w: Vec<&Tensor> = m.layers.iter().filter_map(kinds[2].1).collect();
        let down_w: Vec<&Tensor> = m.layers.iter().filter_map(kinds[3].1).collect();
        let all = qkv_w.len() == m.layers.len()
            && o_w.len() == m.layers.len()
            && gu_w.len() == m.layers.len()
            && down_w.len() == m.layers.len();
        // The element-wise kernels of a decode step at this batch, on random inputs.
        let rnd = |shape: &[usize]| -> candle_core::Result<Tensor> {
            Tensor::randn(0f32, 1.0, shape, &dev)?.to_dtype(m.dtype)
        };
        let f = m.cfg.intermediate_size;
        let (x1, r1, nw) = (
            rnd(&[b, 1, hidden])?,
            rnd(&[b, 1, hidden])?,
            rnd(&[hidden])?,
        );
        let gu1 = rnd(&[b, 1, 2 * f])?;
        let y1 = rnd(&[b, 1, (nh + 2 * nkv) * hd])?;
        let table = rnd(&[m.cfg.max_position_embeddings, hd / 2])?;
        let pos1 = positions(&pads, 1, at, &dev)?;
        let (kc1, vc1) = (
            Tensor::zeros((b, nkv, at + 1, hd), m.dtype, &dev)?,
            Tensor::zeros((b, nkv, at + 1, hd), m.dtype, &dev)?,
        );
        let col1 = Tensor::from_vec(vec![at as u32], 1, &dev)?;
        // Layer-independent: the same tables, positions and caches for every call.
        let split1 = || wattbench_engine::cuda::layer::QkvSplit {
            cos: &table,
            sin: &table,
            positions: &pos1,
            k_cache: &kc1,
            v_cache: &vc1,
            column: wattbench_engine::model::Column::Device(&col1),
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            interleaved: false,
        };
        // The same kernel over the layers' own caches (their capacity apart, as in a step).
        let layer_split = |i: usize| -> Res<wattbench_engine::cuda::layer::QkvSplit> {
            let (k_cache, v_cache) = cache.layer(i).ok_or("no such layer")?;
            Ok(wattbench_engine::cuda::layer::QkvSplit {
                k_cache,
                v_cache,
                ..split1()
            })
        };
        // Decode attention from the QKV projection over the caches `k` and `v`.
        let attend = |k: &Tensor, v: &Tensor| -> Res<()> {
            let split = wattbench_engine::cuda::layer::QkvSplit {
                k_cache: k,
                v_cache: v,
                ..split1()
            };
            wattbench_engine::cuda::attention::decode_attention_qkv(&y1, &split, &starts, 1.0)?;
            Ok(())
        };
        // One cache at the layers' capacity for every layer, and the layers' caches as views of
        // one allocation (where that fits beside the real ones).
        let cap = cache.capacity;
        let (kcap, vcap) = (
            Tensor::zeros((b, nkv, cap, hd), m.dtype, &dev)?,
            Tensor::zeros((b, nkv, cap, hd), m.dtype, &dev)?,
        );
        let layers = m.layers.len();
        let one = if b <= 64 {
            Some((
                Tensor::zeros((layers * b, nkv, cap, hd), m.dtype, &dev)?,
                Tensor::zeros((layers * b, nkv, cap, hd), m.dtype, &dev)?,
            ))
        } else {
            None
        };
        let logits16 = logits.to_dtype(m.dtype)?;
        let sample = |l: &Tensor| wattbench_engine::cuda::sample::sample(l, 0.8, 0.95, 0, 1, None);
        type Body<'a> = Box<dyn Fn() -> Res<()> + 'a>;
        let mut bodies: Vec<(&str, Body)> = vec![(
            "attention_ms",
            Box::new(|| {
                for _ in &m.layers {
                    wattbench_engine::cuda::attention::decode_attention_unrolled(
                        &q,
                        &kc,
                        &vc,
                        &starts,
                        None,
                        1.0,
                        wattbench_engine::cuda::attention::UNROLL,
                    )?;
                }
                Ok(())
            }),
        )];
        bodies.push((
            "add_rms_norm_ms",
            Box::new(|| {
                for _ in 0..2 * m.layers.len() {
                    wattbench_engine::cuda::layer::add_rms_norm(&x1, &r1, &nw, 1e-5)?;
                }
                Ok(())
            }),
        ));
        bodies.push((
            "silu_mul_ms",
            Box::new(|| {
                for _ in &m.layers {
                    wattbench_engine::cuda::layer::silu_mul(&gu1)?;
                }
                Ok(())
            }),
        ));
        bodies.push((
            "qkv_split_ms",
            Box::new(|| {
                for _ in &m.layers {
                    wattbench_engine::cuda::layer::qkv_split(&y1, &split1())?;
                }
                Ok(())
            }),
        ));
        bodies.push((
            "attention_from_qkv_ms",
            Box::new(|| {
                for _ in &m.layers {
                    wattbench_engine::cuda::attention::decode_attention_qkv(
                        &y1,
                        &split1(),
                        &starts,
                        1.0,
                    )?;
                }
                Ok(())
            }),
        ));
        bodies.push((
            "attention_layers_ms",
            Box::new(|| {
                for i in 0..layers {
                    let (k, v) = cache.layer(i).ok_or("no such layer")?;
                    attend(k, v)?;
                }
                Ok(())
            }),
        ));
        bodies.push((
            "attention_capacity_ms",
            Box::new(|| {
                for _ in 0..layers {
                    attend(&kcap, &vcap)?;
                }
                Ok(())
            }),
        ));
        if let Some((k1, v1)) = &one {
            bodies.push((
                "attention_one_allocation_ms",
                Box::new(|| {
                    for i in 0..layers {
                        attend(&k1.narrow(0, i * b, b)?, &v1.narrow(0, i * b, b)?)?;
                    }
                    Ok(())
                }),
            ));
        }
        // The output head and the sampling kernel, alone and as a step runs them (the head's bf16
        // logits sampled as they are), and the sampling of f32 logits.
        bodies.push(("sample_ms", Box::new(|| Ok(sample(&logits16).map(drop)?))));
        bodies.push(("sample_f32_ms", Box::new(|| Ok(sample(&logits).map(drop)?))));
        if let Linear::Dense(w) = &m.lm_head {
            bodies.push(("head_ms", Box::new(|| Ok(Linear::dense(&h, w).map(drop)?))));
            bodies.push((
                "head_sample_ms",
                Box::new(|| Ok(sample(&Linear::dense(&h, w)?.squeeze(1)?).map(drop)?)),
            ));
        }
        if all {
            // Products and attention over the layers' caches in a step's order and with its
            // data flow, without the element-wise kernels between them.
            bodies.push((
                "products_attention_ms",
                Box::new(|| {
                    for i in 0..m.layers.len() {
                        let y = Linear::dense(&h, qkv_w[i])?;
                        let att = wattbench_engine::cuda::attention::decode_attention_qkv(
                            &y,
                            &layer_split(i)?,
                            &starts,
                            1.0,
                        )?
                        .reshape((b, 1, nh * hd))?;
                        Linear::dense(&att, o_w[i])?;
                        Linear::dense(&h, gu_w[i])?;
                        Linear::dense(&a, down_w[i])?;
                    }
                    Ok(())
                }),
            ));
            bodies.push((
                "products_ms",
                Box::new(|| {
                    for i in 0..m.layers.len() {
                        Linear::dense(&h, qkv_w[i])?;
                        Linear::dense(&h, o_w[i])?;
                        Linear::dense(&h, gu_w[i])?;
                        Linear::dense(&a, down_w[i])?;
                    }
                    Ok(())
                }),
            ));
            // Each kind's products of all layers back to back.
            let each: [(&str, &Vec<&Tensor>, &Tensor); 4] = [
                ("products_qkv_ms", &qkv_w, &h),
                ("products_o_ms", &o_w, &h),
                ("products_gate_up_ms", &gu_w, &h),
                ("products_down_ms", &down_w, &a),
            ];
            for (name, ws, x) in each {
                bodies.push((
                    name,
                    Box::new(move || {
                        for w in ws {
                            Linear::dense(x, w)?;
                        }
                        Ok(())
                    }),
                ));
            }
        }
        for (name, body) in bodies {
            in_graph.insert(name.into(), graph_ms(reps, cd, body)?.into());
        }
        // The same attention over one cache of each capacity in `--capacities` (the columns
        // read stay those of `--at`): what the stride between a sequence's heads costs.
        let capacities = arg(args, "--capacities", "");
        for c in capacities.split(',').filter(|c| !c.is_empty()) {
            let c: usize = c.parse()?;
            let (kc, vc) = (
                Tensor::zeros((b, nkv, c, hd), m.dtype, &dev)?,
                Tensor::zeros((b, nkv, c, hd), m.dtype, &dev)?,
            );
            let body = || -> Res<()> {
                for _ in 0..layers {
                    attend(&kc, &vc)?;
                }
                Ok(())
            };
            in_graph.insert(
                format!("attention_capacity_{c}_ms"),
                graph_ms(reps, cd, Box::new(body))?.into(),
            );
        }
    }
    // The same step replayed from a CUDA graph, from column `at` on (in the same cache: a second
    // one would not fit beside it at batch 256).
    // Also with candle's cuBLAS call for every product.
    let mut graph_step = serde_json::Value::Null;
    if m.kernels() {
        let mut r = serde_json::Map::new();
        for (way, on) in [("ms", lt), ("cublas_ms", false)] {
            wattbench_engine::cuda::gemm::set_enabled(on);
            let first = Tensor::from_vec((0..b as u32).map(|i| 3 + i).collect(), b, &dev)?;
            let g = wattbench_engine::cuda::graph::DecodeGraph::start(
                m, &sampler, &mut cache, &first, &pads, at,
            )?;
            if let Some(why) = g.failure() {
                return Err(format!("capturing the decode step failed: {why}").into());
            }
            let (ms, host) = timed(reps, &dev, || Ok(g.replay(m, &sampler, &mut cache)?))?;
            r.insert(way.into(), ms.into());
            if way == "ms" {
                r.insert("host_ms".into(), host.into());
            }
        }
        wattbench_engine::cuda::gemm::set_enabled(lt);
        graph_step = r.into();
    }
    let gemm_choices = match &dev {
        candle_core::Device::Cuda(cd) => {
            serde_json::to_value(wattbench_engine::cuda::gemm::choices(cd)?)?
        }
        _ => serde_json::Value::Null,
    };
    println!(
        "{}",
        serde_json::json!({
            "profile": name,
            "gemm_choices": gemm_choices,
            "graph_step": graph_step,
            "kernels": m.kernels(),
            "batch": b,
            "cache_column": at,
            "cache_capacity": cache.capacity,
            "step_ms": step,
            "step_host_ms": step_host,
            "forward_ms": fwd,
            "forward_host_ms": fwd_host,
            "sample_ms": sample,
            "sample_uncached_ms": sample_uncached,
            "matmuls_ms": matmuls,
            "matmuls": products,
            "attention_ms": attention,
            "attention": attention_ms,
            "other_ms": fwd - matmuls - attention,
            "in_graph": in_graph,
            "prefill": prefill,
        })
    );
    Ok(())
}
