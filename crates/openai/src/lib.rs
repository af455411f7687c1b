//! Driving OpenAI-compatible servers (vLLM, SGLang, llama.cpp, TensorRT-LLM, mistral.rs,
//! `wattbench serve`): [`api`] builds `/v1/completions` and `/v1/chat/completions` requests,
//! [`sse`] reads their server-sent events, [`request`] sends one request and times every event,
//! [`load`] sends many under a load pattern (closed loop at a concurrency, or open loop at a
//! constant or Poisson rate), and [`metrics`] turns the outcomes into latency percentiles,
//! throughputs, goodput and per-request energy.
//!
//! Faults are data: a timeout, a refused or reset connection, an HTTP error, an event that is not
//! JSON or a stream cut before its end marks that request's outcome, counted by reason; the
//! other requests go on.

pub mod api;
pub mod load;
pub mod metrics;
pub mod request;
pub mod sse;

pub use api::{Endpoint, Target};
pub use load::{Load, LoadOptions};
pub use request::{Failure, Outcome, Usage};
