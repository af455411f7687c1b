//! `wattbench serve`: the embedded engine behind an OpenAI-compatible API.

use crate::cli::ServeArgs;
use crate::engine;
use crate::serve::api::{handle, Server};
use crate::serve::batcher::{self, Batching};
use anyhow::Context as _;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use wattbench_workload::Tokenizer;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let api_key = match &args.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| {
            format!("--api-key-env {var}: the environment variable {var} is not set; export it with the key clients must send")
        })?),
        None => None,
    };
    if args.max_batch == 0 {
        anyhow::bail!("--max-batch must be at least 1");
    }
    let listener = TcpListener::bind((args.host.as_str(), args.port)).with_context(|| {
        format!(
            "listening on {}:{}; pick another --port (0 takes a free one) or --host",
            args.host, args.port
        )
    })?;
    let mut loaded = engine::load(&args.model)?;
    let tokenizer = loaded.tokenizer.take().unwrap_or_else(Tokenizer::bytes);
    if loaded.synthetic {
        eprintln!(
            "note: {} has random weights; its text is meaningless, its speed and energy are real",
            args.model.model
        );
    }
    let context = loaded.model.cfg.max_position_embeddings;
    let vocab = loaded.model.cfg.vocab_size;
    let synthetic = loaded.synthetic;
    let jobs = batcher::start(
        loaded,
        Batching {
            max_batch: args.max_batch,
            quiet: args.batch_quiet,
            max_wait: args.batch_wait,
        },
    );
    let server = Arc::new(Server {
        model: args.model.model.clone(),
        tokenizer,
        context,
        vocab,
        synthetic,
        api_key,
        jobs,
    });
    let addr = listener.local_addr()?;
    eprintln!(
        "serving {} on http://{addr} (POST /v1/completions, /v1/chat/completions; GET /v1/models, /health); batches of up to {}",
        args.model.model, args.max_batch
    );
    for (id, stream) in listener.incoming().enumerate() {
        let Ok(stream) = stream else { continue };
        let server = server.clone();
        std::thread::spawn(move || handle(&server, stream, id as u64));
    }
    Ok(ExitCode::SUCCESS)
}
