//! `wattbench serve`: an OpenAI-compatible server over the embedded engine, so that the engine can
//! be driven under the same load as vLLM or SGLang, and so that the HTTP path of `run --engine
//! openai` is tested against a real server.
//!
//! [`http`] reads requests and writes responses (HTTP/1.1, one request per connection), [`api`]
//! turns OpenAI requests into engine jobs and tokens into chunks, and [`batcher`] runs the jobs
//! that arrive together as one batch on the engine.

pub mod api;
pub mod batcher;
pub mod http;
