//! Model shapes: LLaMA-family presets and Hugging Face `config.json` files.

use crate::error::EngineError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shape of a LLaMA-family model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<EosIds>,
}

/// `eos_token_id` is a number or a list in Hugging Face configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

fn default_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}

/// The synthetic presets: name, (hidden, ffn, layers, heads, kv heads, vocab, rope theta, eps, context).
type Shape = (usize, usize, usize, usize, usize, usize, f64, f64, usize);
pub const PRESETS: &[(&str, Shape)] = &[
    ("tiny", (64, 128, 2, 4, 2, 512, 10_000.0, 1e-5, 2048)),
    (
        "smollm2-135m",
        (576, 1536, 30, 9, 3, 49_152, 100_000.0, 1e-5, 8192),
    ),
    (
        "llama-7b",
        (4096, 11008, 32, 32, 32, 32_000, 10_000.0, 1e-6, 2048),
    ),
    (
        "llama-13b",
        (5120, 13824, 40, 40, 40, 32_000, 10_000.0, 1e-6, 2048),
    ),
    (
        "llama-33b",
        (6656, 17920, 60, 52, 52, 32_000, 10_000.0, 1e-6, 2048),
    ),
    (
        "llama-65b",
        (8192, 22016, 80, 64, 64, 32_000, 10_000.0, 1e-6, 2048),
    ),
    (
        "llama2-7b",
        (4096, 11008, 32, 32, 32, 32_000, 10_000.0, 1e-5, 4096),
    ),
    (
        "llama2-13b",
        (5120, 13824, 40, 40, 40, 32_000, 10_000.0, 1e-5, 4096),
    ),
    (
        "llama2-70b",
        (8192, 28672, 80, 64, 8, 32_000, 10_000.0, 1e-5, 4096),
    ),
    (
        "llama3-8b",
        (4096, 14336, 32, 32, 8, 128_256, 500_000.0, 1e-5, 8192),
    ),
    (
        "llama3-70b",
        (8192, 28672, 80, 64, 8, 128_256, 500_000.0, 1e-5, 8192),
    ),
];

impl LlamaConfig {
    pub fn preset(name: &str) -> Result<LlamaConfig, EngineError> {
        let (_, s) =
            PRESETS
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| EngineError::UnknownModel {
                    model: format!("synthetic:{name}"),
                    reason: format!(
                        "no preset of that name; use one of {} or synthetic:PATH/config.json",
                        PRESETS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?;
        let &(hidden, ffn, layers, heads, kv, vocab, theta, eps, ctx) = s;
        Ok(LlamaConfig {
            hidden_size: hidden,
            intermediate_size: ffn,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv),
            vocab_size: vocab,
            rope_theta: theta,
            rms_norm_eps: eps,
            max_position_embeddings: ctx,
            tie_word_embeddings: name == "smollm2-135m",
            bos_token_id: None,
            eos_token_id: None,
        })
    }

    /// Reads a Hugging Face `config.json` of a LLaMA-family model.
    pub fn from_file(path: &Path) -> Result<LlamaConfig, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::Config {
            path: path.to_path_buf(),
            message: format!("cannot read it: {e}"),
        })?;
        let c: LlamaConfig = serde_json::from_str(&text).map_err(|e| EngineError::Config {
            path: path.to_path_buf(),
            message: format!("line {}, column {}: {e}", e.line(), e.column()),
        })?;
        c.validate().map_err(|message| EngineError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        let kv = self.kv_heads();
        if self.hidden_size == 0
            || self.num_hidden_layers == 0
            || self.vocab_size == 0
            || self.num_attention_heads == 0
        {
            return Err("hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {kv}",
                self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "the head dimension {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Number of parameters (embeddings and LM head counted once when tied).
    pub fn parameters(&self) -> u64 {
        let (h, f, l, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.num_hidden_layers as u64,
            self.vocab_size as u64,
        );
        let kv = (self.kv_heads() * self.head_dim()) as u64;
        let per_layer = h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + l * per_layer + h + head
    }

    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(EosIds::One(i)) => vec![*i],
            Some(EosIds::Many(v)) => v.clone(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_published_parameter_counts() {
        let billions = |n: &str| LlamaConfig::preset(n).unwrap().parameters() as f64 / 1e9;
        assert!(
            (billions("llama-7b") - 6.74).abs() < 0.01,
            "{}",
            billions("llama-7b")
        );
        assert!((billions("llama-13b") - 13.0).abs() < 0.05);
        assert!((billions("llama-65b") - 65.3).abs() < 0.1);
        assert!((billions("llama2-70b") - 69.0).abs() < 0.1);
        assert!((billions("llama3-8b") - 8.03).abs() < 0.01);
        assert_eq!(
            LlamaConfig::preset("smollm2-135m").unwrap().parameters(),
            134_515_008
        );
        assert!(LlamaConfig::preset("gpt-9")
            .unwrap_err()
            .to_string()
            .contains("llama-7b"));
    }
}
