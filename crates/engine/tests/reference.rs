//! The engine against an independent forward pass written here in plain f64 arithmetic, over a
//! small safetensors checkpoint that the test writes.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use wattbench_engine::model::{positions, KvCache};
use wattbench_engine::*;
use wattbench_workload::hub::Hub;
use wattbench_workload::sample::SplitMix64;

const H: usize = 32;
const F: usize = 48;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV: usize = 2;
const V: usize = 40;
const D: usize = H / HEADS;

type Mat = Vec<Vec<f64>>;

struct RefLayer {
    attn_norm: Vec<f64>,
    q: Mat,
    k: Mat,
    v: Mat,
    o: Mat,
    ffn_norm: Vec<f64>,
    gate: Mat,
    up: Mat,
    down: Mat,
}

struct RefModel {
    embed: Mat,
    layers: Vec<RefLayer>,
    norm: Vec<f64>,
    head: Mat,
}

fn matvec(w: &Mat, x: &[f64]) -> Vec<f64> {
    w.iter()
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

fn rms(x: &[f64], w: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + 1e-5).sqrt();
    x.iter().zip(w).map(|(a, b)| a * r * b).collect()
}

/// Rotary embedding in the half-split (`rotate_half`) form, on one head vector.
fn rope(x: &[f64], pos: usize) -> Vec<f64> {
    let half = D / 2;
    let mut out = x.to_vec();
    for i in 0..half {
        let theta = pos as f64 / 10_000f64.powf(2.0 * i as f64 / D as f64);
        let (c, s) = (theta.cos(), theta.sin());
        out[i] = x[i] * c - x[i + half] * s;
        out[i + half] = x[i + half] * c + x[i] * s;
    }
    out
}

impl RefModel {
    /// Logits after every position of `tokens`.
    fn forward(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let t = tokens.len();
        let mut xs: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&i| self.embed[i as usize].clone())
            .collect();
        for l in &self.layers {
            let hs: Vec<Vec<f64>> = xs.iter().map(|x| rms(x, &l.attn_norm)).collect();
            let q: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&l.q, h)).collect();
            let k: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&l.k, h)).collect();
            let v: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&l.v, h)).collect();
            for i in 0..t {
                let mut y = vec![0.0; H];
                for head in 0..HEADS {
                    let kvh = head / (HEADS / KV);
                    let qi = rope(&q[i][head * D..(head + 1) * D], i);
                    let scores: Vec<f64> = (0..=i)
                        .map(|j| {
                            let kj = rope(&k[j][kvh * D..(kvh + 1) * D], j);
                            qi.iter().zip(&kj).map(|(a, b)| a * b).sum::<f64>() / (D as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (j, w) in e.iter().enumerate() {
                        for d in 0..D {
                            y[head * D + d] += w / z * v[j][kvh * D + d];
                        }
                    }
                }
                let o = matvec(&l.o, &y);
                for (a, b) in xs[i].iter_mut().zip(o) {
                    *a += b;
                }
                let h2 = rms(&xs[i], &l.ffn_norm);
                let g = matvec(&l.gate, &h2);
                let u = matvec(&l.up, &h2);
                let act: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let d = matvec(&l.down, &act);
                for (a, b) in xs[i].iter_mut().zip(d) {
                    *a += b;
                }
            }
        }
        xs.iter()
            .map(|x| matvec(&self.head, &rms(x, &self.norm)))
            .collect()
    }
}

/// Writes a checkpoint with random weights and returns its folder and the same weights in f64.
fn checkpoint(dir: &std::path::Path) -> RefModel {
    let mut rng = SplitMix64::new(11);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut mat = |name: &str, rows: usize, cols: usize, scale: f64| -> Mat {
        let m: Mat = (0..rows)
            .map(|_| {
                (0..cols)
                    .map(|_| (rng.unit() * 2.0 - 1.0) * scale)
                    .collect()
            })
            .collect();
        let flat: Vec<f32> = m.iter().flatten().map(|&v| v as f32).collect();
        let back: Mat = flat
            .chunks(cols)
            .map(|r| r.iter().map(|&v| f64::from(v)).collect())
            .collect();
        tensors.insert(
            name.into(),
            Tensor::from_vec(flat, (rows, cols), &Device::Cpu).unwrap(),
        );
        back
    };
    let embed = mat("model.embed_tokens.weight", V, H, 1.0);
    let mut layers = Vec::new();
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        let attn_norm = mat(&format!("{p}.input_layernorm.weight"), 1, H, 1.0)[0].clone();
        let q = mat(&format!("{p}.self_attn.q_proj.weight"), H, H, 0.3);
        let k = mat(&format!("{p}.self_attn.k_proj.weight"), KV * D, H, 0.3);
        let v = mat(&format!("{p}.self_attn.v_proj.weight"), KV * D, H, 0.3);
        let o = mat(&format!("{p}.self_attn.o_proj.weight"), H, H, 0.3);
        let ffn_norm = mat(&format!("{p}.post_attention_layernorm.weight"), 1, H, 1.0)[0].clone();
        let gate = mat(&format!("{p}.mlp.gate_proj.weight"), F, H, 0.3);
        let up = mat(&format!("{p}.mlp.up_proj.weight"), F, H, 0.3);
        let down = mat(&format!("{p}.mlp.down_proj.weight"), H, F, 0.3);
        layers.push(RefLayer {
            attn_norm,
            q,
            k,
            v,
            o,
            ffn_norm,
            gate,
            up,
            down,
        });
    }
    let norm = mat("model.norm.weight", 1, H, 1.0)[0].clone();
    let head = mat("lm_head.weight", V, H, 0.3);
    // Norm weights were written as [1, H]: store them as [H].
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            if k.contains("norm") {
                (k, t.squeeze(0).unwrap())
            } else {
                (k, t)
            }
        })
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"hidden_size": {H}, "intermediate_size": {F}, "num_hidden_layers": {LAYERS},
                "num_attention_heads": {HEADS}, "num_key_value_heads": {KV}, "vocab_size": {V},
                "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
                "eos_token_id": 2}}"#
        ),
    )
    .unwrap();
    RefModel {
        embed,
        layers,
        norm,
        head,
    }
}

fn load(dir: &std::path::Path) -> LoadedModel {
    let spec = ModelSpec::parse(&dir.display().to_string()).unwrap();
    load_model(
        &spec,
        "tiny-checkpoint",
        &Device::Cpu,
        DType::F32,
        0,
        &Hub::from_env(),
    )
    .unwrap()
}

fn close(a: &[f32], b: &[f64]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (f64::from(*x) - y).abs() <= 1e-4 * (1.0 + y.abs()))
}

#[test]
fn logits_match_the_reference_forward_in_prefill_decode_and_padded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let reference = checkpoint(dir.path());
    let m = load(dir.path()).model;
    let a: Vec<u32> = vec![5, 17, 3, 39, 8, 21, 0];
    let b: Vec<u32> = vec![12, 1, 30];
    let ref_a = reference.forward(&a);
    let ref_b = reference.forward(&b);

    // Prefill of both, left-padded, then one decode step each with the next token.
    let pads = [0usize, a.len() - b.len()];
    let mut flat = a.clone();
    flat.extend(std::iter::repeat_n(0, pads[1]));
    flat.extend(&b);
    let tokens = Tensor::from_vec(flat, (2, a.len()), &Device::Cpu).unwrap();
    let mut cache = KvCache::new(&m, 2, a.len() + 1).unwrap();
    let t = a.len();
    let logits = m
        .forward(
            &tokens,
            &positions(&pads, t, 0, &Device::Cpu).unwrap(),
            &pads,
            &mut cache,
            0,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(
        close(&logits[0], &ref_a[a.len() - 1]),
        "{:?}\n{:?}",
        &logits[0][..5],
        &ref_a[a.len() - 1][..5]
    );
    assert!(
        close(&logits[1], &ref_b[b.len() - 1]),
        "padded sequence differs"
    );

    let (na, nb) = (7u32, 33u32);
    let step = Tensor::from_vec(vec![na, nb], (2, 1), &Device::Cpu).unwrap();
    let logits = m
        .forward(
            &step,
            &positions(&pads, 1, t, &Device::Cpu).unwrap(),
            &pads,
            &mut cache,
            t,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut a2 = a.clone();
    a2.push(na);
    let mut b2 = b.clone();
    b2.push(nb);
    assert!(close(&logits[0], reference.forward(&a2).last().unwrap()));
    assert!(close(&logits[1], reference.forward(&b2).last().unwrap()));
}

#[test]
fn batched_greedy_generation_equals_one_sequence_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path());
    let loaded = load(dir.path());
    let prompts = [vec![5u32, 17, 3, 39, 8], vec![12, 1], vec![30, 30, 30, 4]];
    let params = GenerationParams {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ignore_eos: true,
        eos_ids: vec![2],
    };
    let reqs: Vec<Request> = prompts
        .iter()
        .map(|p| Request {
            prompt: p.clone(),
            max_new_tokens: 12,
        })
        .collect();
    let batch = generate(&loaded.model, &reqs, &params, "tiny", None, &mut |_, _| {}).unwrap();
    for (i, r) in reqs.iter().enumerate() {
        let one = generate(
            &loaded.model,
            std::slice::from_ref(r),
            &params,
            "tiny",
            None,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(
            batch.outputs[i].tokens, one.outputs[0].tokens,
            "sequence {i}"
        );
        assert_eq!(batch.outputs[i].tokens.len(), 12);
        // Greedy from the reference: the argmax of its logits, one token at a time.
        let reference = checkpoint(tempfile::tempdir().unwrap().path());
        let mut seq = r.prompt.clone();
        for &tok in &batch.outputs[i].tokens[..4] {
            let l = reference.forward(&seq);
            let last = l.last().unwrap();
            let arg = last
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32;
            assert_eq!(tok, arg);
            seq.push(tok);
        }
    }
    assert_eq!(batch.decode_steps, 11);
}

#[test]
fn eos_stops_a_sequence_unless_ignored_and_sampling_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path());
    let loaded = load(dir.path());
    let req = Request {
        prompt: vec![5, 17, 3],
        max_new_tokens: 20,
    };
    let greedy = GenerationParams {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ignore_eos: true,
        eos_ids: vec![],
    };
    let out = generate(
        &loaded.model,
        std::slice::from_ref(&req),
        &greedy,
        "t",
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let stop = out.outputs[0].tokens[3];
    let with_eos = GenerationParams {
        ignore_eos: false,
        eos_ids: vec![stop],
        ..greedy.clone()
    };
    let out2 = generate(
        &loaded.model,
        std::slice::from_ref(&req),
        &with_eos,
        "t",
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let first = out.outputs[0]
        .tokens
        .iter()
        .position(|&t| t == stop)
        .unwrap();
    assert_eq!(out2.outputs[0].tokens.len(), first + 1);
    assert_eq!(out2.outputs[0].finish, FinishReason::Eos);
    assert_eq!(out.outputs[0].finish, FinishReason::Length);

    let sampled = GenerationParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: 42,
        ..greedy
    };
    let s1 = generate(
        &loaded.model,
        std::slice::from_ref(&req),
        &sampled,
        "t",
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let s2 = generate(
        &loaded.model,
        std::slice::from_ref(&req),
        &sampled,
        "t",
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(s1.outputs, s2.outputs);
    let s3 = generate(
        &loaded.model,
        std::slice::from_ref(&req),
        &GenerationParams {
            seed: 43,
            ..sampled
        },
        "t",
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_ne!(s1.outputs, s3.outputs);
}
