//! `--model`: what to load, and loading it.

use crate::config::LlamaConfig;
use crate::error::EngineError;
use crate::model::Llama;
use crate::weights;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use wattbench_workload::hub::{Hub, RepoKind};
use wattbench_workload::Tokenizer;

#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// Random weights of a preset shape (`synthetic:llama-7b`) or of a `config.json`.
    Synthetic {
        preset: Option<String>,
        config: Option<PathBuf>,
    },
    /// A Hugging Face model folder (config.json, safetensors, tokenizer.json).
    Dir(PathBuf),
    /// A GGUF file, weights quantized as stored.
    Gguf(PathBuf),
    /// A hub model, downloaded once into the hub cache.
    Hub { repo: String, revision: String },
}

impl ModelSpec {
    pub fn parse(s: &str) -> Result<ModelSpec, EngineError> {
        let bad = |reason: &str| EngineError::UnknownModel {
            model: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = s.strip_prefix("synthetic:") {
            if rest.ends_with(".json") || rest.contains('/') {
                return Ok(ModelSpec::Synthetic {
                    preset: None,
                    config: Some(rest.into()),
                });
            }
            LlamaConfig::preset(rest)?;
            return Ok(ModelSpec::Synthetic {
                preset: Some(rest.to_string()),
                config: None,
            });
        }
        if let Some(rest) = s.strip_prefix("gguf:") {
            return Ok(ModelSpec::Gguf(rest.into()));
        }
        if let Some(rest) = s.strip_prefix("hf:") {
            let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
            if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
                return Err(bad("name a hub model as hf:ORG/NAME[@REVISION]"));
            }
            return Ok(ModelSpec::Hub {
                repo: repo.into(),
                revision: revision.into(),
            });
        }
        let p = PathBuf::from(s);
        if p.extension().is_some_and(|e| e == "gguf") {
            return Ok(ModelSpec::Gguf(p));
        }
        if p.is_dir() {
            return Ok(ModelSpec::Dir(p));
        }
        Err(bad(
            "use synthetic:PRESET, synthetic:PATH/config.json, a model folder, gguf:PATH (or a .gguf file) or hf:ORG/NAME",
        ))
    }

    /// The shape, where it is known without reading weights (synthetic models).
    pub fn known_config(&self) -> Option<LlamaConfig> {
        match self {
            ModelSpec::Synthetic {
                preset: Some(p), ..
            } => LlamaConfig::preset(p).ok(),
            ModelSpec::Synthetic {
                config: Some(c), ..
            } => LlamaConfig::from_file(c).ok(),
            _ => None,
        }
    }

    /// Whether the weights are random (its text is meaningless).
    pub fn is_synthetic(&self) -> bool {
        matches!(self, ModelSpec::Synthetic { .. })
    }
}

/// A model ready to generate, with its tokenizer when it has one.
pub struct LoadedModel {
    pub name: String,
    /// The model, or its first shard when it is split over several devices.
    pub model: Llama,
    /// The other shards, in rank order; empty for a model on one device.
    pub shards: Vec<Llama>,
    pub tokenizer: Option<Tokenizer>,
    pub synthetic: bool,
}

impl LoadedModel {
    /// Devices the model runs on (one per shard).
    pub fn devices(&self) -> usize {
        1 + self.shards.len()
    }

    /// Generates one batch: on the model's device, or on every shard at once.
    pub fn generate(
        &self,
        requests: &[crate::Request],
        params: &crate::GenerationParams,
        memory_bytes: Option<u64>,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<crate::BatchResult, EngineError> {
        if self.shards.is_empty() {
            return crate::generate(
                &self.model,
                requests,
                params,
                &self.name,
                memory_bytes,
                on_token,
            );
        }
        let all: Vec<&Llama> = std::iter::once(&self.model).chain(&self.shards).collect();
        crate::parallel::generate_sharded(
            &all,
            requests,
            params,
            &self.name,
            memory_bytes,
            on_token,
        )
    }

    /// Splits the model (loaded on the CPU) over `devices`, one shard each, with `group` adding
    /// up the shards' partial sums.
    pub fn split(
        self,
        devices: &[Device],
        group: std::sync::Arc<dyn crate::parallel::AllReduce>,
    ) -> Result<LoadedModel, EngineError> {
        // Each shard is cut and copied to its GPU by its own thread.
        let model = &self.model;
        let mut shards = shards_on(devices, group, |shard, d| model.shard(shard, d))?;
        let model = shards.remove(0);
        Ok(LoadedModel {
            name: self.name,
            model,
            shards,
            tokenizer: self.tokenizer,
            synthetic: self.synthetic,
        })
    }
}

/// Loads `spec` split over `devices`, tensor-parallel, with `group` adding up the shards'
/// partial sums. A synthetic model's shards are computed on their own devices, one thread each;
/// any other model is read whole on the CPU and cut ([`LoadedModel::split`]).
pub fn load_split(
    spec: &ModelSpec,
    name: &str,
    devices: &[Device],
    dtype: DType,
    seed: u64,
    hub: &Hub,
    group: std::sync::Arc<dyn crate::parallel::AllReduce>,
) -> Result<LoadedModel, EngineError> {
    let ModelSpec::Synthetic { .. } = spec else {
        let whole = load_model(spec, name, &Device::Cpu, dtype, seed, hub)?;
        return whole.split(devices, group);
    };
    let cfg = synthetic_config(spec)?;
    let mut shards = shards_on(devices, group, |shard, d| {
        crate::synthetic::synthetic_shard(&cfg, seed, dtype, d, shard)
    })?;
    let model = shards.remove(0);
    Ok(LoadedModel {
        name: name.to_string(),
        model,
        shards,
        tokenizer: None,
        synthetic: true,
    })
}

/// One shard per device, rank by rank, each made by `make` on its own thread and ready on its
/// device when this returns.
fn shards_on(
    devices: &[Device],
    group: std::sync::Arc<dyn crate::parallel::AllReduce>,
    make: impl Fn(crate::parallel::Shard, &Device) -> Result<Llama, EngineError> + Sync,
) -> Result<Vec<Llama>, EngineError> {
    let world = devices.len();
    let make = &make;
    let results: Vec<Result<Llama, EngineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(rank, d)| {
                let group = group.clone();
                s.spawn(move || {
                    let m = make(crate::parallel::Shard { rank, world, group }, d)?;
                    d.synchronize()?;
                    Ok(m)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EngineError::Shard {
                        world,
                        message: "a thread making a shard panicked".into(),
                    })
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

/// The shape of a synthetic spec: its preset or its `config.json`.
fn synthetic_config(spec: &ModelSpec) -> Result<LlamaConfig, EngineError> {
    match spec {
        ModelSpec::Synthetic {
            preset: Some(p), ..
        } => LlamaConfig::preset(p),
        ModelSpec::Synthetic {
            config: Some(c), ..
        } => LlamaConfig::from_file(c),
        _ => unreachable!("a synthetic spec names a preset or a config; this is a bug"),
    }
}

fn folder_tokenizer(dir: &Path) -> Result<Option<Tokenizer>, EngineError> {
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        return Ok(None);
    }
    Tokenizer::from_json(&path)
        .map(Some)
        .map_err(|e| EngineError::Weights {
            path,
            message: e.to_string(),
        })
}

/// Loads `spec` onto `device`. Synthetic weights come from `seed`; `dtype` applies to dense
/// weights (GGUF runs in f32 activations over its quantized matrices).
pub fn load_model(
    spec: &ModelSpec,
    name: &str,
    device: &Device,
    dtype: DType,
    seed: u64,
    hub: &Hub,
) -> Result<LoadedModel, EngineError> {
    let (model, tokenizer) = match spec {
        ModelSpec::Synthetic { .. } => {
            let cfg = synthetic_config(spec)?;
            (
                crate::synthetic::synthetic(&cfg, seed, dtype, device)?,
                None,
            )
        }
        ModelSpec::Dir(dir) => (
            weights::safetensors_dir(dir, dtype, device)?,
            folder_tokenizer(dir)?,
        ),
        ModelSpec::Gguf(path) => {
            if !path.is_file() {
                return Err(EngineError::Gguf {
                    path: path.clone(),
                    message: "no such file".into(),
                });
            }
            let model = weights::gguf(path, device)?;
            let tok = Tokenizer::from_gguf(path).map_err(|e| EngineError::Gguf {
                path: path.clone(),
                message: e.to_string(),
            })?;
            (model, Some(tok))
        }
        ModelSpec::Hub { repo, revision } => {
            let want = |files: &[String]| -> Result<Vec<String>, String> {
                let chosen: Vec<String> = files
                    .iter()
                    .filter(|f| {
                        !f.contains('/')
                            && (f.ends_with(".safetensors")
                                || [
                                    "config.json",
                                    "tokenizer.json",
                                    "tokenizer_config.json",
                                    "generation_config.json",
                                ]
                                .contains(&f.as_str()))
                    })
                    .cloned()
                    .collect();
                if !chosen.iter().any(|f| f.ends_with(".safetensors")) {
                    return Err("the repository has no .safetensors weights".into());
                }
                Ok(chosen)
            };
            let files = hub.files(RepoKind::Model, repo, revision, &want).map_err(|e| EngineError::UnknownModel {
                model: format!("hf:{repo}"),
                reason: format!(
                    "{e}. Download it on a connected machine into the same HF_HOME and set HF_HUB_OFFLINE=1, or pass its folder"
                ),
            })?;
            let dir = files[0].parent().map(Path::to_path_buf).unwrap_or_default();
            (
                weights::safetensors_dir(&dir, dtype, device)?,
                folder_tokenizer(&dir)?,
            )
        }
    };
    Ok(LoadedModel {
        name: name.to_string(),
        model,
        shards: Vec::new(),
        tokenizer,
        synthetic: spec.is_synthetic(),
    })
}
