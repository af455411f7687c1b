//! Building a model: synthetic weights from a seed, a Hugging Face safetensors checkpoint, or a
//! GGUF file with its quantized weights as stored.

use crate::config::LlamaConfig;
use crate::error::EngineError;
use crate::model::{GateUp, Layer, Linear, Llama, Qkv};
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Tensor};
use std::path::Path;
use wattbench_workload::sample::SplitMix64;

/// Standard deviation of synthetic weights (the Hugging Face LLaMA initializer's).
const INIT_STD: f64 = 0.02;
/// Elements per independently seeded stream, so generation can run on every core and still give
/// the same values whatever the number of threads.
const CHUNK: usize = 1 << 20;

/// One uniform value with standard deviation `INIT_STD`.
fn value(rng: &mut SplitMix64) -> f32 {
    let a = (INIT_STD * 3f64.sqrt()) as f32;
    (rng.unit() as f32 * 2.0 - 1.0) * a
}

/// A weight matrix `[rows, cols]` made of `parts` stacked by rows: part `i` has `parts[i].0`
/// rows of uniform values with standard deviation `INIT_STD` from `seed` and tensor number
/// `first + i`, multiplied by `parts[i].1` where given (the attention scale folded into the
/// queries), in `dtype` arithmetic as a tensor multiplication would.
///
/// Generated on the host with SplitMix64 so that every device gets identical weights (CPU and
/// CUDA runs of the same synthetic model must give the same greedy tokens), then copied over.
/// Every core generates, rounds and scales its own chunks, and fused matrices (`[q; k; v]`,
/// `[gate; up]`) are written in place, so a 65B model's weights are neither produced one value
/// at a time nor copied again to be joined.
fn weights(
    parts: &[(usize, Option<f64>)],
    cols: usize,
    seed: u64,
    first: u64,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let rows: usize = parts.iter().map(|p| p.0).sum();
    fn build<T: candle_core::WithDType + Default + Send>(
        parts: &[(usize, Option<f64>)],
        cols: usize,
        seed: u64,
        first: u64,
        round: fn(f32) -> T,
    ) -> Vec<T> {
        let rows: usize = parts.iter().map(|p| p.0).sum();
        let mut data = vec![T::default(); rows * cols];
        let mut rest = data.as_mut_slice();
        for (i, &(r, scale)) in parts.iter().enumerate() {
            let (part, tail) = rest.split_at_mut(r * cols);
            rest = tail;
            let tensor = first + i as u64;
            match scale {
                None => fill(part, seed, tensor, move |rng| round(value(rng))),
                Some(s) => {
                    let (mul, add) = (T::from_f64(s), T::from_f64(0.0));
                    fill(part, seed, tensor, move |rng| round(value(rng)) * mul + add)
                }
            }
        }
        data
    }
    let t = match dtype {
        DType::BF16 => Tensor::from_vec(
            build(parts, cols, seed, first, half::bf16::from_f32),
            (rows, cols),
            &Device::Cpu,
        )?,
        DType::F16 => Tensor::from_vec(
            build(parts, cols, seed, first, half::f16::from_f32),
            (rows, cols),
            &Device::Cpu,
        )?,
        _ => Tensor::from_vec(
            build(parts, cols, seed, first, |v| v),
            (rows, cols),
            &Device::Cpu,
        )?
        .to_dtype(dtype)?,
    };
    t.to_device(device)
}

/// Fills `data`, each chunk of `CHUNK` from its own stream (seeded by `seed`, the tensor's number
/// and the chunk's), chunks spread over the cores.
fn fill<T: Send>(
    data: &mut [T],
    seed: u64,
    tensor: u64,
    value: impl Fn(&mut SplitMix64) -> T + Copy + Send,
) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(32);
    let chunks: Vec<(usize, &mut [T])> = data.chunks_mut(CHUNK).enumerate().collect();
    let per = chunks.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let mut chunks = chunks;
        while !chunks.is_empty() {
            let take = per.min(chunks.len());
            let mine: Vec<(usize, &mut [T])> = chunks.drain(..take).collect();
            s.spawn(move || {
                for (ci, chunk) in mine {
                    let mut rng = SplitMix64::new(
                        seed ^ tensor.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((ci as u64) << 20),
                    );
                    for v in chunk.iter_mut() {
                        *v = value(&mut rng);
                    }
                }
            });
        }
    });
}

/// A model of `cfg`'s shape with random weights from `seed`.
pub fn synthetic(
    cfg: &LlamaConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Llama> {
    let (h, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let kv = cfg.kv_heads() * cfg.head_dim();
    let scale = 1.0 / (cfg.head_dim() as f64).sqrt();
    // Tensor numbers in the order q, k, v, o, gate, up, down of each layer, after the embedding.
    let mut id = 0u64;
    let mut next = |parts: &[(usize, Option<f64>)], cols: usize| {
        let t = weights(parts, cols, seed, id + 1, dtype, device);
        id += parts.len() as u64;
        t
    };
    let ones = |n: usize| Tensor::ones(n, dtype, device);
    let embed = next(&[(v, None)], h)?;
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for _ in 0..cfg.num_hidden_layers {
        let qkv = next(&[(h, Some(scale)), (kv, None), (kv, None)], h)?;
        let wo = next(&[(h, None)], h)?;
        let gate_up = next(&[(f, None), (f, None)], h)?;
        let down = next(&[(h, None)], f)?;
        layers.push(Layer {
            attn_norm: ones(h)?,
            qkv: Qkv::Fused(qkv),
            wo: Linear::Dense(wo),
            ffn_norm: ones(h)?,
            gate_up: GateUp::Fused(gate_up),
            w_down: Linear::Dense(down),
        });
    }
    let lm_head = if cfg.tie_word_embeddings {
        Linear::Dense(embed.clone())
    } else {
        Linear::Dense(next(&[(v, None)], h)?)
    };
    Llama::new(cfg.clone(), embed, layers, ones(h)?, lm_head, false)
}

/// A Hugging Face model folder: `config.json` and `model.safetensors` or sharded
/// `model-*-of-*.safetensors`.
pub fn safetensors_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Llama, EngineError> {
    let cfg = LlamaConfig::from_file(&dir.join("config.json"))?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::Weights {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EngineError::Weights {
            path: dir.to_path_buf(),
            message: "no .safetensors files in the folder".into(),
        });
    }
    let werr = |e: candle_core::Error| EngineError::Weights {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    // SAFETY: the files are mapped read-only for the model's lifetime; wattbench never writes
    // them, and a user changing a checkpoint during a run is outside what any loader can guard.
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
        .map_err(werr)?;
    let (h, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let kv = cfg.kv_heads() * cfg.head_dim();
    let m = vb.pp("model");
    let get =
        |vb: &candle_nn::VarBuilder, shape: &[usize], name: &str| vb.get(shape, name).map_err(werr);
    let embed = get(&m, &[v, h], "embed_tokens.weight")?;
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let l = m.pp(format!("layers.{i}"));
        let (a, p) = (l.pp("self_attn"), l.pp("mlp"));
        layers.push(
            Layer::dense(
                get(&l, &[h], "input_layernorm.weight")?,
                get(&a, &[h, h], "q_proj.weight")?,
                get(&a, &[kv, h], "k_proj.weight")?,
                get(&a, &[kv, h], "v_proj.weight")?,
                get(&a, &[h, h], "o_proj.weight")?,
                get(&l, &[h], "post_attention_layernorm.weight")?,
                get(&p, &[f, h], "gate_proj.weight")?,
                get(&p, &[f, h], "up_proj.weight")?,
                get(&p, &[h, f], "down_proj.weight")?,
                cfg.head_dim(),
            )
            .map_err(werr)?,
        );
    }
    let norm = get(&m, &[h], "norm.weight")?;
    let lm_head = if cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
        Linear::Dense(embed.clone())
    } else {
        Linear::Dense(get(&vb, &[v, h], "lm_head.weight")?)
    };
    Llama::new(cfg, embed, layers, norm, lm_head, false).map_err(werr)
}

/// A GGUF file of the `llama` architecture, matrices kept quantized as stored.
pub fn gguf(path: &Path, device: &Device) -> Result<Llama, EngineError> {
    let gerr = |message: String| EngineError::Gguf {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| gerr(format!("cannot open it: {e}")))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| gerr(format!("not a readable GGUF file: {e}")))?;
    let md = |k: &str| content.metadata.get(k);
    let arch = md("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "(none)".into());
    if arch != "llama" {
        return Err(gerr(format!(
            "architecture {arch:?} is not supported (only \"llama\"); convert a LLaMA-family model"
        )));
    }
    let u = |k: &str| -> Result<usize, EngineError> {
        md(&format!("llama.{k}"))
            .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
            .map(|v| v as usize)
            .ok_or_else(|| gerr(format!("metadata llama.{k} is missing")))
    };
    let fl = |k: &str, d: f64| {
        md(&format!("llama.{k}"))
            .and_then(|v| v.to_f32().ok())
            .map_or(d, f64::from)
    };
    let heads = u("attention.head_count")?;
    let vocab = md("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok().map(|v| v.len()))
        .ok_or_else(|| gerr("it holds no tokenizer.ggml.tokens".into()))?;
    let cfg = LlamaConfig {
        hidden_size: u("embedding_length")?,
        intermediate_size: u("feed_forward_length")?,
        num_hidden_layers: u("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(u("attention.head_count_kv").unwrap_or(heads)),
        vocab_size: vocab,
        rope_theta: fl("rope.freq_base", 10_000.0),
        rms_norm_eps: fl("attention.layer_norm_rms_epsilon", 1e-5),
        max_position_embeddings: u("context_length").unwrap_or(2048),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        bos_token_id: None,
        eos_token_id: None,
    };
    cfg.validate().map_err(gerr)?;
    let mut qt = |name: &str| {
        content
            .tensor(&mut file, name, device)
            .map_err(|e| gerr(format!("tensor {name}: {e}")))
    };
    let dense =
        |t: candle_core::quantized::QTensor| t.dequantize(device).map_err(|e| gerr(e.to_string()));
    let quant = |t: candle_core::quantized::QTensor| {
        QMatMul::from_qtensor(t)
            .map(Linear::Quant)
            .map_err(|e| gerr(e.to_string()))
    };
    let embed = dense(qt("token_embd.weight")?)?;
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = format!("blk.{i}");
        layers.push(Layer {
            attn_norm: dense(qt(&format!("{p}.attn_norm.weight"))?)?,
            qkv: Qkv::Split(
                quant(qt(&format!("{p}.attn_q.weight"))?)?,
                quant(qt(&format!("{p}.attn_k.weight"))?)?,
                quant(qt(&format!("{p}.attn_v.weight"))?)?,
            ),
            wo: quant(qt(&format!("{p}.attn_output.weight"))?)?,
            ffn_norm: dense(qt(&format!("{p}.ffn_norm.weight"))?)?,
            gate_up: GateUp::Split(
                quant(qt(&format!("{p}.ffn_gate.weight"))?)?,
                quant(qt(&format!("{p}.ffn_up.weight"))?)?,
            ),
            w_down: quant(qt(&format!("{p}.ffn_down.weight"))?)?,
        });
    }
    let norm = dense(qt("output_norm.weight")?)?;
    let lm_head = quant(qt(if cfg.tie_word_embeddings {
        "token_embd.weight"
    } else {
        "output.weight"
    })?)?;
    Llama::new(cfg, embed, layers, norm, lm_head, true).map_err(|e| gerr(e.to_string()))
}

#[cfg(test)]
mod fused_tests {
    use super::*;

    /// A fused matrix equals its parts generated alone, the first scaled by a tensor
    /// multiplication and all joined by `cat`: the same values, bit for bit, in every dtype.
    #[test]
    fn fused_weights_equal_their_parts_scaled_and_joined() {
        let cpu = Device::Cpu;
        let scale = 1.0 / 8f64.sqrt();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let fused = weights(
                &[(48, Some(scale)), (16, None), (16, None)],
                40,
                7,
                3,
                dtype,
                &cpu,
            )
            .unwrap();
            let part =
                |rows: usize, id: u64| weights(&[(rows, None)], 40, 7, id, dtype, &cpu).unwrap();
            let q = (part(48, 3) * scale).unwrap();
            let joined = Tensor::cat(&[q, part(16, 4), part(16, 5)], 0).unwrap();
            let values = |t: &Tensor| -> Vec<f32> {
                let t = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
                t.to_vec1().unwrap()
            };
            let (a, b) = (values(&fused), values(&joined));
            assert_eq!(a, b, "{dtype:?}");
            assert!(a.iter().any(|&v| v != 0.0));
        }
    }
}
