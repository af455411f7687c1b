//! Requests that arrive together run as one batch on the engine (static batching, as the
//! embedded engine runs offline batches): the first waiting request opens a batch, which takes
//! every request that arrives until it is full or no request has come for a short quiet time.
//! Requests with other sampling settings wait for a batch of their own.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use wattbench_engine::{FinishReason, GenerationParams, LoadedModel, Request};

/// A request for the engine, and where its tokens go.
pub struct Job {
    pub prompt: Vec<u32>,
    pub max_new_tokens: u32,
    pub params: GenerationParams,
    pub reply: Sender<Msg>,
}

pub enum Msg {
    Token(u32),
    Done(FinishReason),
    Failed(String),
}

/// How batches are gathered.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_batch: usize,
    /// A batch closes when no request has arrived for this long...
    pub quiet: Duration,
    /// ...or when it has been open this long.
    pub max_wait: Duration,
}

/// Runs the engine on its own thread; jobs go in through the returned sender.
pub fn start(model: LoadedModel, batching: Batching) -> Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("wattbench-engine".into())
        .spawn(move || run(&model, &rx, batching))
        .expect("starting the engine thread");
    tx
}

fn same_settings(a: &GenerationParams, b: &GenerationParams) -> bool {
    a.temperature == b.temperature && a.top_p == b.top_p && a.ignore_eos == b.ignore_eos
}

fn run(model: &LoadedModel, rx: &Receiver<Job>, b: Batching) {
    let mut held: Vec<Job> = Vec::new();
    loop {
        if held.is_empty() {
            match rx.recv() {
                Ok(j) => held.push(j),
                Err(_) => return,
            }
        }
        let opened = Instant::now();
        while held.len() < b.max_batch.max(1) {
            let left = b.max_wait.saturating_sub(opened.elapsed());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(b.quiet.min(left)) {
                Ok(j) => held.push(j),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // The first request's settings make the batch; the others wait for the next.
        let settings = held[0].params.clone();
        let mut batch = Vec::new();
        let mut rest = Vec::new();
        for j in held.drain(..) {
            if batch.len() < b.max_batch.max(1) && same_settings(&j.params, &settings) {
                batch.push(j);
            } else {
                rest.push(j);
            }
        }
        held = rest;
        let requests: Vec<Request> = batch
            .iter()
            .map(|j| Request {
                prompt: j.prompt.clone(),
                max_new_tokens: j.max_new_tokens,
            })
            .collect();
        let result = model.generate(&requests, &settings, None, &mut |i, t| {
            let _ = batch[i].reply.send(Msg::Token(t));
        });
        match result {
            Ok(r) => {
                for (j, o) in batch.iter().zip(&r.outputs) {
                    let _ = j.reply.send(Msg::Done(o.finish));
                }
            }
            Err(e) => {
                for j in &batch {
                    let _ = j.reply.send(Msg::Failed(e.to_string()));
                }
            }
        }
    }
}
