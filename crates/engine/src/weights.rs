//! Reading a model's weights: a Hugging Face safetensors checkpoint, or a GGUF file with its
//! quantized weights as stored (synthetic weights are in [`crate::synthetic`]).

use crate::config::LlamaConfig;
use crate::error::EngineError;
use crate::model::{GateUp, Layer, Linear, Llama, Qkv};
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device};
use std::path::Path;

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
