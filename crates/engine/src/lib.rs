//! The embedded engine: LLaMA-family models on candle, batched generation on CPU and CUDA.

pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod error;
pub mod generate;
pub mod model;
pub mod parallel;
pub mod sampling;
pub mod spec;
pub mod synthetic;
pub mod weights;

pub use config::LlamaConfig;
pub use error::EngineError;
pub use generate::{fits, generate, BatchResult, FinishReason, GenerationParams, Output, Request};
pub use model::Llama;
pub use spec::{load_model, load_split, LoadedModel, ModelSpec};
