//! Tokenizers: Hugging Face `tokenizer.json` files and the tokenizer embedded in GGUF files, with
//! the model's chat template where it defines one.

use crate::error::WorkloadError;
use crate::gguf::{read_metadata, Metadata, Value};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// The pre-tokenizer regex of LLaMA-3-style byte-level BPE (`tokenizer.ggml.pre = llama-bpe`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Source name of [`Tokenizer::bytes`].
pub const BYTES: &str = "bytes";

/// A model's tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it was loaded from, for messages and provenance.
    pub source: String,
    chat_template: Option<String>,
    bos: Option<String>,
    eos: Option<String>,
    /// Token ids that end generation.
    pub eos_id: Option<u32>,
    /// Whether the model expects a BOS token before raw prompts.
    pub add_bos: bool,
    pub bos_id: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .finish()
    }
}

fn tok_err(source: &str, e: impl std::fmt::Display) -> WorkloadError {
    WorkloadError::Tokenizer {
        source_desc: source.to_string(),
        message: e.to_string(),
    }
}

impl Tokenizer {
    /// Loads `bytes` (the built-in byte tokenizer), `gguf:PATH`, a `.gguf` file, a
    /// `tokenizer.json`, or a model directory holding one.
    pub fn load(spec: &str) -> Result<Tokenizer, WorkloadError> {
        if spec == BYTES {
            return Ok(Self::bytes());
        }
        let path = PathBuf::from(spec.strip_prefix("gguf:").unwrap_or(spec));
        if !path.exists() {
            return Err(tok_err(
                spec,
                "no such file or directory; pass --tokenizer a tokenizer.json, a model directory or a .gguf file",
            ));
        }
        if spec.starts_with("gguf:") || path.extension().is_some_and(|e| e == "gguf") {
            return Self::from_gguf(&path);
        }
        if path.is_dir() {
            return Self::from_json(&path.join("tokenizer.json"));
        }
        Self::from_json(&path)
    }

    /// The built-in byte tokenizer: every UTF-8 byte is one token (ids 3..=258), after `<pad>` (0),
    /// `<s>` (1, added before prompts) and `</s>` (2, end of sequence). It needs no file, so models
    /// without a tokenizer of their own (synthetic weights) can run on text datasets anywhere; its
    /// token counts are byte counts, about four times those of a BPE tokenizer on English text.
    pub fn bytes() -> Tokenizer {
        // GPT-2's printable stand-ins for bytes, as byte-level BPE vocabularies spell them.
        let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        let mut extra = 0;
        let mut vocab: tokenizers::models::bpe::Vocab = [("<pad>", 0), ("<s>", 1), ("</s>", 2)]
            .into_iter()
            .map(|(t, i)| (t.to_string(), i))
            .collect();
        for b in 0u32..256 {
            let c = if printable(b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            let c = char::from_u32(c).expect("byte stand-ins are valid characters");
            vocab.insert(c.to_string(), 3 + b);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .build()
            .expect("the byte vocabulary is a valid BPE model");
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, false)));
        inner.with_decoder(Some(ByteLevel::default()));
        inner.add_special_tokens(&[
            AddedToken::from("<pad>", true),
            AddedToken::from("<s>", true),
            AddedToken::from("</s>", true),
        ]);
        Tokenizer {
            inner,
            source: BYTES.to_string(),
            chat_template: None,
            bos: Some("<s>".into()),
            eos: Some("</s>".into()),
            eos_id: Some(2),
            add_bos: true,
            bos_id: Some(1),
        }
    }

    /// A Hugging Face `tokenizer.json`; the chat template and special tokens come from the
    /// `tokenizer_config.json` beside it, when there is one.
    pub fn from_json(path: &Path) -> Result<Tokenizer, WorkloadError> {
        let source = path.display().to_string();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| tok_err(&source, e))?;
        let config: serde_json::Value = path
            .parent()
            .map(|d| d.join("tokenizer_config.json"))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let token_text = |key: &str| match &config[key] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => {
                o.get("content").and_then(|c| c.as_str()).map(String::from)
            }
            _ => None,
        };
        let bos = token_text("bos_token");
        let eos = token_text("eos_token");
        Ok(Tokenizer {
            eos_id: eos.as_deref().and_then(|t| inner.token_to_id(t)),
            bos_id: bos.as_deref().and_then(|t| inner.token_to_id(t)),
            add_bos: config["add_bos_token"].as_bool().unwrap_or(false),
            chat_template: config["chat_template"].as_str().map(String::from),
            bos,
            eos,
            inner,
            source,
        })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (special tokens, BOS, chat template)
    /// into `dir`, as Hugging Face model folders hold them: [`Tokenizer::from_json`] reads them
    /// back as this tokenizer.
    pub fn save(&self, dir: &Path) -> Result<(), WorkloadError> {
        let out = dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|e| tok_err(&out, e))?;
        self.inner
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| tok_err(&out, e))?;
        let config = serde_json::json!({
            "bos_token": self.bos,
            "eos_token": self.eos,
            "add_bos_token": self.add_bos,
            "chat_template": self.chat_template,
        });
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string())
            .map_err(|e| tok_err(&out, e))
    }

    /// The byte-level BPE tokenizer embedded in a GGUF file (`tokenizer.ggml.model = gpt2`).
    pub fn from_gguf(path: &Path) -> Result<Tokenizer, WorkloadError> {
        let meta = read_metadata(path)?;
        Self::from_gguf_metadata(&meta, &format!("gguf:{}", path.display()))
    }

    pub fn from_gguf_metadata(meta: &Metadata, source: &str) -> Result<Tokenizer, WorkloadError> {
        let model = meta.str("tokenizer.ggml.model").unwrap_or("(none)");
        if model != "gpt2" {
            return Err(tok_err(
                source,
                format!(
                    "the GGUF tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\"); \
                     pass --tokenizer with the model's tokenizer.json"
                ),
            ));
        }
        let strings = |key: &str| -> Result<Vec<String>, WorkloadError> {
            meta.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| tok_err(source, format!("the GGUF has no {key}")))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or_else(|| tok_err(source, format!("{key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                // Split after the first *character*: merge parts may start with multi-byte "Ġ".
                let cut = m
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| c == ' ')
                    .map(|(i, _)| i)
                    .ok_or_else(|| tok_err(source, format!("merge {m:?} has no space")))?;
                Ok((m[..cut].to_string(), m[cut + 1..].to_string()))
            })
            .collect::<Result<_, WorkloadError>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| tok_err(source, e))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre = meta.str("tokenizer.ggml.pre").unwrap_or("default");
        let byte_level = ByteLevel::new(false, true, true);
        match pre {
            "smollm" => {
                inner.with_pre_tokenizer(Some(Sequence::new(vec![Digits::new(true).into(), byte_level.into()])));
            }
            "default" | "gpt2" | "gpt-2" => {
                inner.with_pre_tokenizer(Some(byte_level));
            }
            "llama-bpe" | "llama3" => {
                let split = Split::new(SplitPattern::Regex(LLAMA3_REGEX.into()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| tok_err(source, e))?;
                inner.with_pre_tokenizer(Some(Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, true, false).into(),
                ])));
            }
            other => {
                return Err(tok_err(
                    source,
                    format!(
                        "the GGUF pre-tokenizer {other:?} is not supported (smollm, gpt2 and llama-bpe are); \
                         pass --tokenizer with the model's tokenizer.json"
                    ),
                ))
            }
        }
        inner.with_decoder(Some(ByteLevel::default()));
        if let Some(types) = meta
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
        {
            // Type 3 = control (special), 4 = user-defined: both must match whole, never be split.
            let added: Vec<AddedToken> = types
                .iter()
                .zip(&tokens)
                .filter_map(|(t, tok)| match t.as_u64() {
                    Some(3) => Some(AddedToken::from(tok.clone(), true)),
                    Some(4) => Some(AddedToken::from(tok.clone(), false)),
                    _ => None,
                })
                .collect();
            inner.add_special_tokens(&added);
        }
        let id = |key: &str| meta.get(key).and_then(Value::as_u64).map(|v| v as u32);
        let text_of = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned());
        let (bos_id, eos_id) = (
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
        );
        Ok(Tokenizer {
            inner,
            source: source.to_string(),
            chat_template: meta.str("tokenizer.chat_template").map(String::from),
            bos: text_of(bos_id),
            eos: text_of(eos_id),
            eos_id,
            bos_id,
            add_bos: meta
                .get("tokenizer.ggml.add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// Token ids of `text`, special tokens in the text recognized; no BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, WorkloadError> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| tok_err(&self.source, e))
    }

    pub fn count(&self, text: &str) -> Result<usize, WorkloadError> {
        self.encode(text).map(|ids| ids.len())
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String, WorkloadError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| tok_err(&self.source, e))
    }

    /// Text of `ids` without special tokens, for showing generated text.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String, WorkloadError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| tok_err(&self.source, e))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Whether `id` is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        let added = self.inner.get_added_vocabulary();
        added
            .simple_id_to_token(id)
            .is_some_and(|t| added.is_special_token(&t))
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The prompt as one user turn of the model's chat template (after `system`, if given), with
    /// the generation prompt; `None` when the model defines no template.
    pub fn apply_chat_template(
        &self,
        prompt: &str,
        system: Option<&str>,
    ) -> Result<Option<String>, WorkloadError> {
        let Some(template) = &self.chat_template else {
            return Ok(None);
        };
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        let err = |e: minijinja::Error| tok_err(&self.source, format!("chat template: {e}"));
        env.add_template("chat", template).map_err(err)?;
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(minijinja::context! { role => "system", content => s });
        }
        messages.push(minijinja::context! { role => "user", content => prompt });
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos.clone().unwrap_or_default(),
            eos_token => self.eos.clone().unwrap_or_default(),
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map(Some)
            .map_err(err)
    }
}
