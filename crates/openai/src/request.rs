//! One request: sent, its events timed on the run's clock, its faults classified.

use crate::api::{body, piece, Sampling, Target};
use crate::sse::{Event, SseReader};
use std::io::{BufReader, Read};
use std::time::Instant;

/// Why a request failed; counted by [`Failure::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// No complete answer within the timeout.
    Timeout,
    /// Refused, reset or closed before the response started.
    Connection,
    /// An HTTP status of 400 or more.
    Http(u16),
    /// A streamed event whose data is not a JSON chunk.
    InvalidEvent,
    /// The stream stopped before its `[DONE]` (the connection dropped mid-stream).
    Truncated,
    /// A whole (non-streamed) response that is not a JSON completion.
    InvalidResponse,
}

impl Failure {
    pub fn reason(&self) -> String {
        match self {
            Failure::Timeout => "timeout".into(),
            Failure::Connection => "connection".into(),
            Failure::Http(s) => format!("http_{s}"),
            Failure::InvalidEvent => "invalid_event".into(),
            Failure::Truncated => "truncated_stream".into(),
            Failure::InvalidResponse => "invalid_response".into(),
        }
    }
}

/// Token counts as the server reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// What one request did, in seconds on the run's clock.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The prompt's position in the run.
    pub index: usize,
    pub start_s: f64,
    /// When the first text arrived (streaming only).
    pub first_token_s: Option<f64>,
    pub end_s: f64,
    /// When each event that reported tokens arrived (streaming), in order.
    pub token_times: Vec<f64>,
    pub text: String,
    pub finish_reason: Option<String>,
    /// None when the server sent no usage.
    pub usage: Option<Usage>,
    pub failure: Option<Failure>,
    /// The failure as the client saw it, for the log.
    pub detail: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

fn classify(e: &ureq::Error) -> Failure {
    match e {
        ureq::Error::Timeout(_) => Failure::Timeout,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Connection,
    }
}

fn io_failure(e: &std::io::Error, started: bool) -> Failure {
    let text = e.to_string().to_ascii_lowercase();
    if e.kind() == std::io::ErrorKind::TimedOut || text.contains("timeout") {
        Failure::Timeout
    } else if started {
        Failure::Truncated
    } else {
        Failure::Connection
    }
}

/// A client for one target (connections are kept and reused).
pub fn agent(t: &Target) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(t.timeout))
        .http_status_as_error(false)
        .max_idle_connections(4096)
        .max_idle_connections_per_host(4096)
        .build()
        .into()
}

/// Sends `prompt` and reads the answer to its end; never panics on what the server does.
pub fn send(
    agent: &ureq::Agent,
    t: &Target,
    index: usize,
    prompt: &str,
    max_tokens: u32,
    sampling: &Sampling,
    clock: Instant,
) -> Outcome {
    let now = || clock.elapsed().as_secs_f64();
    let mut o = Outcome {
        index,
        start_s: now(),
        ..Outcome::default()
    };
    let mut req = agent
        .post(t.url())
        .header("Content-Type", "application/json");
    if let Some(k) = &t.api_key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let payload = body(t, prompt, max_tokens, sampling).to_string();
    let fail = |mut o: Outcome, f: Failure, detail: String| {
        o.failure = Some(f);
        o.detail = Some(detail);
        o.end_s = now();
        o
    };
    let resp = match req.send(payload.as_bytes()) {
        Ok(r) => r,
        Err(e) => return fail(o, classify(&e), e.to_string()),
    };
    let status = resp.status().as_u16();
    let mut reader = resp.into_body().into_reader();
    if status >= 400 {
        let mut text = String::new();
        let _ = (&mut reader).take(2000).read_to_string(&mut text);
        return fail(o, Failure::Http(status), text.trim().to_string());
    }
    if !t.stream {
        let mut text = String::new();
        if let Err(e) = reader.read_to_string(&mut text) {
            let f = io_failure(&e, false);
            return fail(o, f, e.to_string());
        }
        let parsed = serde_json::from_str(&text)
            .ok()
            .and_then(|v| piece(t.endpoint, &v));
        let Some(p) = parsed else {
            return fail(
                o,
                Failure::InvalidResponse,
                text.chars().take(200).collect(),
            );
        };
        o.text = p.text;
        o.finish_reason = p.finish_reason;
        if p.prompt_tokens.is_some() || p.completion_tokens.is_some() {
            o.usage = Some(Usage {
                prompt_tokens: p.prompt_tokens,
                completion_tokens: p.completion_tokens,
            });
        }
        o.end_s = now();
        return o;
    }
    let mut events = SseReader::new(BufReader::with_capacity(16 * 1024, reader));
    loop {
        let data = match events.next_event() {
            Ok(Event::Data(d)) => d,
            Ok(Event::End) => {
                return fail(
                    o,
                    Failure::Truncated,
                    "the stream ended before [DONE]".into(),
                );
            }
            Err(e) => {
                let f = io_failure(&e, true);
                return fail(o, f, e.to_string());
            }
        };
        let at = now();
        if data.trim() == "[DONE]" {
            o.end_s = at;
            return o;
        }
        let parsed = serde_json::from_str(&data)
            .ok()
            .and_then(|v| piece(t.endpoint, &v));
        let Some(p) = parsed else {
            return fail(o, Failure::InvalidEvent, data.chars().take(200).collect());
        };
        if p.token {
            o.first_token_s.get_or_insert(at);
            o.token_times.push(at);
        }
        o.text.push_str(&p.text);
        if p.finish_reason.is_some() {
            o.finish_reason = p.finish_reason;
        }
        if p.prompt_tokens.is_some() || p.completion_tokens.is_some() {
            o.usage = Some(Usage {
                prompt_tokens: p.prompt_tokens,
                completion_tokens: p.completion_tokens,
            });
        }
    }
}
