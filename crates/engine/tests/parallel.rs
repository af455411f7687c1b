//! Tensor-parallel shards against the unsharded model, on the CPU: the shards' threads add their
//! partial sums through an in-process all-reduce, and must give the same logits (to float
//! tolerance) and the same greedy tokens.

use candle_core::{DType, Device, Tensor, D};
use std::sync::Arc;
use wattbench_engine::model::{positions, KvCache, Llama};
use wattbench_engine::parallel::{generate_sharded, AllReduce, LocalGroup, Shard};
use wattbench_engine::*;
use wattbench_workload::hub::Hub;
use wattbench_workload::sample::SplitMix64;

/// 8 query heads over 4 key/value heads (grouped-query attention), MLP of 256.
fn model(dir: &std::path::Path) -> LoadedModel {
    model_with(dir, 4)
}

/// 8 query heads over `kv_heads` key/value heads, MLP of 256.
fn model_with(dir: &std::path::Path, kv_heads: usize) -> LoadedModel {
    let cfg = dir.join(format!("config-{kv_heads}.json"));
    std::fs::write(
        &cfg,
        format!(
            r#"{{"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 8, "num_key_value_heads": {kv_heads}, "vocab_size": 320,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-5}}"#
        ),
    )
    .unwrap();
    let spec = format!("synthetic:{}", cfg.display());
    load_model(
        &ModelSpec::parse(&spec).unwrap(),
        &spec,
        &Device::Cpu,
        DType::F32,
        7,
        &Hub::from_env(),
    )
    .unwrap()
}

/// Greedy decoding of every token asked for.
fn greedy() -> GenerationParams {
    GenerationParams {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ignore_eos: true,
        eos_ids: vec![],
    }
}

fn shards(m: &Llama, world: usize) -> Vec<Llama> {
    let group = LocalGroup::new(world);
    (0..world)
        .map(|rank| {
            let shard = Shard {
                rank,
                world,
                group: group.clone(),
            };
            m.shard(shard, &Device::Cpu).unwrap()
        })
        .collect()
}

/// Runs `f` on every shard in its own thread; returns each shard's result, in rank order.
fn on_all<T: Send>(shards: &[Llama], f: impl Fn(&Llama) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = shards.iter().map(|m| s.spawn(|| f(m))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn requests() -> Vec<Request> {
    let mut rng = SplitMix64::new(3);
    [9usize, 4, 13]
        .iter()
        .map(|&n| Request {
            prompt: (0..n).map(|_| rng.below(320) as u32).collect(),
            max_new_tokens: 32,
        })
        .collect()
}

#[test]
fn two_and_four_shards_give_the_unsharded_logits_and_greedy_tokens() {
    let dir = tempfile::tempdir().unwrap();
    same_as_unsharded(&model(dir.path()), &[2, 4]);
}

/// The paper's 8-way split (LLaMA-65B over 8 GPUs), with one query and one key/value head per
/// shard, as LLaMA-65B's 64 heads split over 8 give 8 each.
#[test]
fn eight_shards_give_the_unsharded_logits_and_greedy_tokens() {
    let dir = tempfile::tempdir().unwrap();
    same_as_unsharded(&model_with(dir.path(), 8), &[8]);
}

fn same_as_unsharded(full: &LoadedModel, worlds: &[usize]) {
    let kv = full.model.kv_heads();
    let reqs = requests();
    let pads: Vec<usize> = reqs.iter().map(|r| 13 - r.prompt.len()).collect();
    let flat: Vec<u32> = reqs
        .iter()
        .zip(&pads)
        .flat_map(|(r, &p)| std::iter::repeat_n(0, p).chain(r.prompt.iter().copied()))
        .collect();
    let prefill = |m: &Llama| -> Tensor {
        let dev = &Device::Cpu;
        let mut cache = KvCache::new(m, 3, 16).unwrap();
        let tokens = Tensor::from_vec(flat.clone(), (3, 13), dev).unwrap();
        m.forward(
            &tokens,
            &positions(&pads, 13, 0, dev).unwrap(),
            &pads,
            &mut cache,
            0,
        )
        .unwrap()
    };
    let params = greedy();
    let greedy = |m: &Llama| -> Vec<Vec<u32>> {
        generate(m, &reqs, &params, "test", None, &mut |_, _| {})
            .unwrap()
            .outputs
            .into_iter()
            .map(|o| o.tokens)
            .collect()
    };
    let want_logits = prefill(&full.model);
    let want_tokens = greedy(&full.model);
    for &world in worlds {
        let parts = shards(&full.model, world);
        assert_eq!(parts[0].heads(), 8 / world);
        assert_eq!(parts[0].kv_heads(), kv / world);
        for logits in on_all(&parts, |m| prefill(m)) {
            let diff = (&logits - &want_logits)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(D::Minus1)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{world} shards: logits differ by {diff}");
        }
        for tokens in on_all(&parts, |m| greedy(m)) {
            assert_eq!(tokens, want_tokens, "{world} shards");
        }
    }
}

#[test]
fn shard_counts_that_do_not_divide_the_heads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let full = model(dir.path());
    let group: Arc<LocalGroup> = LocalGroup::new(3);
    let e = full
        .model
        .shard(
            Shard {
                rank: 0,
                world: 3,
                group,
            },
            &Device::Cpu,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("over 3 GPUs") && e.contains("8 attention heads") && e.contains("divide"),
        "{e}"
    );
    let group = LocalGroup::new(8);
    let e = full
        .model
        .shard(
            Shard {
                rank: 0,
                world: 8,
                group,
            },
            &Device::Cpu,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("4 key/value heads"), "{e}");
}

#[test]
fn a_model_split_over_shards_generates_the_unsharded_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let reqs = requests();
    let params = GenerationParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: 11,
        ignore_eos: true,
        eos_ids: vec![],
    };
    let whole = model(dir.path());
    let mut streamed = 0;
    let want = whole
        .generate(&reqs, &params, None, &mut |_, _| streamed += 1)
        .unwrap();
    assert_eq!(streamed, 3 * 32);
    let split = model(dir.path())
        .split(&[Device::Cpu, Device::Cpu], LocalGroup::new(2))
        .unwrap();
    assert_eq!(split.devices(), 2);
    let mut streamed = 0;
    let got = split
        .generate(&reqs, &params, None, &mut |_, _| streamed += 1)
        .unwrap();
    assert_eq!(streamed, 3 * 32, "the first shard streams every token once");
    let tokens = |r: &BatchResult| {
        r.outputs
            .iter()
            .map(|o| o.tokens.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tokens(&got),
        tokens(&want),
        "sampled tokens, temperature 0.8"
    );
}

/// A group whose shard `rank` fails its `fail_at`-th all-reduce (a GPU error in one shard, say).
struct Flaky {
    inner: Arc<LocalGroup>,
    rank: usize,
    fail_at: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl AllReduce for Flaky {
    fn sum(&self, rank: usize, t: &Tensor) -> candle_core::Result<Tensor> {
        if rank == self.rank
            && self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.fail_at
        {
            candle_core::bail!("simulated failure of shard {rank}");
        }
        self.inner.sum(rank, t)
    }

    fn abort(&self, rank: usize, reason: &str) {
        self.inner.abort(rank, reason)
    }
}

/// Runs `f` in a thread; fails the test if it does not end within a minute (a shard left waiting).
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the shards were left waiting for each other")
}

#[test]
fn a_failing_shard_stops_the_others_and_its_own_error_is_returned() {
    for (fail_at, world) in [(1usize, 2usize), (7, 2), (3, 4)] {
        let got = within_a_minute(move || {
            let dir = tempfile::tempdir().unwrap();
            let whole = model(dir.path());
            let group = Arc::new(Flaky {
                inner: LocalGroup::new(world),
                rank: world - 1,
                fail_at,
                calls: Default::default(),
            });
            let shards: Vec<Llama> = (0..world)
                .map(|rank| {
                    whole
                        .model
                        .shard(
                            Shard {
                                rank,
                                world,
                                group: group.clone(),
                            },
                            &Device::Cpu,
                        )
                        .unwrap()
                })
                .collect();
            let refs: Vec<&Llama> = shards.iter().collect();
            let params = greedy();
            generate_sharded(&refs, &requests(), &params, "test", None, &mut |_, _| {})
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let e = got.expect_err("a shard failed");
        assert!(
            e.contains(&format!("simulated failure of shard {}", world - 1)),
            "{fail_at}/{world}: {e}"
        );
    }
}

#[test]
fn a_shard_that_fails_before_any_all_reduce_does_not_leave_the_others_waiting() {
    let got = within_a_minute(|| {
        let dir = tempfile::tempdir().unwrap();
        let whole = model(dir.path());
        let mut shards = shards(&whole.model, 2);
        // Shard 1 alone refuses the prompts (its context is shorter than they are).
        shards[1].cfg.max_position_embeddings = 8;
        let refs: Vec<&Llama> = shards.iter().collect();
        let params = greedy();
        generate_sharded(&refs, &requests(), &params, "test", None, &mut |_, _| {})
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let e = got.expect_err("shard 1 failed");
    assert!(e.contains("context"), "shard 1's own error: {e}");
}

/// Every weight of a synthetic model's shard, computed on its own, equals the same weight cut
/// from the whole model, bit for bit (1, 2 and 4 shards, with grouped-query attention and a
/// bf16 model whose query rows are scaled in bf16).
#[test]
fn synthetic_shards_computed_alone_equal_the_whole_models_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 320,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5}"#,
    )
    .unwrap();
    let cfg = LlamaConfig::from_file(&path).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        let t = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
        t.to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    let dense = |w: &model::Linear| match w {
        model::Linear::Dense(t) => t.clone(),
        model::Linear::Quant(_) => panic!("synthetic weights are dense"),
    };
    let weights = |m: &Llama| -> Vec<Vec<u32>> {
        let mut all = vec![bits(&m.embed), bits(&m.norm), bits(&dense(&m.lm_head))];
        for l in &m.layers {
            let (model::Qkv::Fused(qkv), model::GateUp::Fused(gu)) = (&l.qkv, &l.gate_up) else {
                panic!("synthetic weights are fused")
            };
            for t in [
                qkv,
                gu,
                &dense(&l.wo),
                &dense(&l.w_down),
                &l.attn_norm,
                &l.ffn_norm,
            ] {
                all.push(bits(t));
            }
        }
        all
    };
    for dtype in [DType::BF16, DType::F32] {
        let whole = synthetic::synthetic(&cfg, 9, dtype, &Device::Cpu).unwrap();
        for world in [1, 2, 4] {
            let group = LocalGroup::new(world);
            for rank in 0..world {
                let shard = || Shard {
                    rank,
                    world,
                    group: group.clone(),
                };
                let cut = whole.shard(shard(), &Device::Cpu).unwrap();
                let alone =
                    synthetic::synthetic_shard(&cfg, 9, dtype, &Device::Cpu, shard()).unwrap();
                assert_eq!(
                    weights(&alone),
                    weights(&cut),
                    "{dtype:?} shard {rank} of {world}"
                );
            }
        }
    }
    let group = LocalGroup::new(3);
    let shard = Shard {
        rank: 0,
        world: 3,
        group,
    };
    let err = synthetic::synthetic_shard(&cfg, 9, DType::F32, &Device::Cpu, shard).err();
    assert!(
        err.is_some_and(|e| e
            .to_string()
            .contains("must each divide by the number of shards")),
        "8 heads do not split 3 ways"
    );
}

/// A synthetic model loaded split (each shard computed alone) generates the unsharded tokens.
#[test]
fn a_synthetic_model_loaded_split_generates_the_unsharded_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let whole = model(dir.path());
    let spec = format!("synthetic:{}", dir.path().join("config-4.json").display());
    let split = spec::load_split(
        &ModelSpec::parse(&spec).unwrap(),
        &spec,
        &[Device::Cpu, Device::Cpu],
        DType::F32,
        7,
        &Hub::from_env(),
        LocalGroup::new(2),
    )
    .unwrap();
    assert_eq!(split.devices(), 2);
    let reqs = requests();
    let tokens = |m: &LoadedModel| {
        let r = m.generate(&reqs, &greedy(), None, &mut |_, _| {}).unwrap();
        r.outputs.into_iter().map(|o| o.tokens).collect::<Vec<_>>()
    };
    assert_eq!(tokens(&split), tokens(&whole));
}
