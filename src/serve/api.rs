//! The OpenAI endpoints over the engine: `/v1/completions` and `/v1/chat/completions`, streamed
//! (server-sent events, with `stream_options.include_usage`) or not, `/v1/models` and `/health`.

use super::batcher::{Job, Msg};
use super::http;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::mpsc::{self, Sender};
use std::time::{SystemTime, UNIX_EPOCH};
use wattbench_engine::{FinishReason, GenerationParams};
use wattbench_workload::Tokenizer;

/// What every connection shares.
pub struct Server {
    /// The name clients use for the model (`--model` as given).
    pub model: String,
    pub tokenizer: Tokenizer,
    pub context: usize,
    pub vocab: usize,
    /// Random weights: token ids beyond the vocabulary (a borrowed tokenizer's) are folded into
    /// it, as `run` does; for real weights they are an error.
    pub synthetic: bool,
    pub api_key: Option<String>,
    pub jobs: Sender<Job>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Answers one connection; errors are the client's (a closed connection), so they only end it.
pub fn handle(server: &Server, stream: TcpStream, id: u64) {
    let req = match http::read(&stream) {
        Ok(r) => r,
        Err(e) => {
            let _ = http::error(&stream, 400, &e);
            return;
        }
    };
    if let Some(key) = &server.api_key {
        let given = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            let _ = http::error(
                &stream,
                401,
                "a missing or wrong API key (Authorization: Bearer KEY)",
            );
            return;
        }
    }
    let path = req.path.split('?').next().unwrap_or("");
    let _ = match (req.method.as_str(), path) {
        ("GET", "/health") => http::json(&stream, 200, &json!({ "status": "ok" })),
        ("GET", "/v1/models") => http::json(
            &stream,
            200,
            &json!({ "object": "list", "data": [{ "id": server.model, "object": "model", "owned_by": "wattbench" }] }),
        ),
        ("POST", "/v1/completions") => complete(server, &stream, &req.body, false, id),
        ("POST", "/v1/chat/completions") => complete(server, &stream, &req.body, true, id),
        (_, "/v1/completions" | "/v1/chat/completions" | "/v1/models" | "/health") => http::error(
            &stream,
            405,
            &format!("{} is not allowed on {path}", req.method),
        ),
        _ => http::error(&stream, 404, &format!("no endpoint {path}")),
    };
}

/// The prompt of a request: `prompt` (a string, or a list of one), or the chat `messages` in the
/// model's chat template (joined as `role: content` lines where it has none).
fn prompt_text(server: &Server, body: &Value, chat: bool) -> Result<String, String> {
    if !chat {
        return match &body["prompt"] {
            Value::String(s) => Ok(s.clone()),
            Value::Array(a) if a.len() == 1 && a[0].is_string() => {
                Ok(a[0].as_str().unwrap_or("").into())
            }
            _ => Err("`prompt` must be a string (or a list of one)".into()),
        };
    }
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("`messages` must be a non-empty list")?;
    let mut system = None;
    let mut user = Vec::new();
    for m in messages {
        let content = m["content"]
            .as_str()
            .ok_or("every message needs a string `content`")?;
        match m["role"].as_str() {
            Some("system") => system = Some(content.to_string()),
            Some(_) => user.push(content.to_string()),
            None => return Err("every message needs a `role`".into()),
        }
    }
    let text = user.join("\n");
    match server
        .tokenizer
        .apply_chat_template(&text, system.as_deref())
        .map_err(|e| e.to_string())?
    {
        Some(t) => Ok(t),
        None => Ok(match system {
            Some(s) => format!("system: {s}\nuser: {text}\nassistant:"),
            None => text,
        }),
    }
}

fn number(body: &Value, key: &str, default: f64) -> Result<f64, String> {
    match &body[key] {
        Value::Null => Ok(default),
        v => v.as_f64().ok_or(format!("`{key}` must be a number")),
    }
}

fn complete(
    server: &Server,
    s: &TcpStream,
    body: &[u8],
    chat: bool,
    id: u64,
) -> std::io::Result<()> {
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return http::error(s, 400, &format!("the body is not JSON: {e}")),
    };
    if let Some(m) = body["model"].as_str() {
        if m != server.model {
            return http::error(
                s,
                404,
                &format!("this server serves {:?}, not {m:?}", server.model),
            );
        }
    }
    let parsed = (|| -> Result<(Vec<u32>, u32, GenerationParams, bool, bool), String> {
        let text = prompt_text(server, &body, chat)?;
        let mut prompt = server.tokenizer.encode(&text).map_err(|e| e.to_string())?;
        if let Some(&id) = prompt.iter().find(|&&i| i as usize >= server.vocab) {
            if !server.synthetic {
                return Err(format!(
                    "the prompt has token id {id}, outside the model's vocabulary of {}; serve the model with its own tokenizer",
                    server.vocab
                ));
            }
            for i in &mut prompt {
                *i %= server.vocab as u32;
            }
        }
        let max = number(&body, "max_tokens", 16.0)?;
        if !(max >= 1.0 && max <= u32::MAX as f64) {
            return Err("`max_tokens` must be at least 1".into());
        }
        let max = max as u32;
        if prompt.len() + max as usize > server.context {
            return Err(format!(
                "the prompt's {} tokens and max_tokens {max} are more than the model's context of {}",
                prompt.len(),
                server.context
            ));
        }
        let params = GenerationParams {
            temperature: number(&body, "temperature", 1.0)?,
            top_p: number(&body, "top_p", 1.0)?,
            seed: body["seed"].as_u64().unwrap_or(0),
            ignore_eos: body["ignore_eos"].as_bool().unwrap_or(false),
            eos_ids: server.tokenizer.eos_id.into_iter().collect(),
        };
        let stream = body["stream"].as_bool().unwrap_or(false);
        let usage = body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        Ok((prompt, max, params, stream, usage))
    })();
    let (prompt, max, params, stream, include_usage) = match parsed {
        Ok(p) => p,
        Err(e) => return http::error(s, 400, &e),
    };
    let prompt_tokens = prompt.len();
    let (tx, rx) = mpsc::channel();
    let job = Job {
        prompt,
        max_new_tokens: max,
        params,
        reply: tx,
    };
    if server.jobs.send(job).is_err() {
        return http::error(s, 503, "the engine has stopped");
    }
    let rid = format!("{}-{id}", if chat { "chatcmpl" } else { "cmpl" });
    let object = if chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    let created = now_s();
    let choice = |text: &str, finish: Option<&str>| {
        if chat {
            json!({ "index": 0, "delta": { "content": text }, "finish_reason": finish })
        } else {
            json!({ "index": 0, "text": text, "finish_reason": finish })
        }
    };
    let finish_name = |f: FinishReason| match f {
        FinishReason::Eos => "stop",
        FinishReason::Length => "length",
    };
    let mut tokens: Vec<u32> = Vec::new();
    let mut shown = String::new();
    let mut started = false;
    let usage = |n: usize| json!({ "prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n });
    for msg in rx {
        match msg {
            Msg::Failed(e) => {
                if started {
                    // Headers are out: end the stream with an error event.
                    return http::event(s, &json!({ "error": { "message": e } }).to_string());
                }
                return http::error(s, 500, &e);
            }
            Msg::Token(t) => {
                tokens.push(t);
                if !stream {
                    continue;
                }
                if !started {
                    http::start_events(s)?;
                    started = true;
                }
                let all = server.tokenizer.decode_text(&tokens).unwrap_or_default();
                // Only whole characters: a partial UTF-8 sequence decodes to U+FFFD.
                let piece = if !all.ends_with('\u{FFFD}') && all.starts_with(&shown) {
                    let p = all[shown.len()..].to_string();
                    shown = all;
                    p
                } else {
                    String::new()
                };
                let chunk = json!({ "id": rid, "object": format!("{object}.chunk"), "created": created, "model": server.model, "choices": [choice(&piece, None)] });
                http::event(s, &chunk.to_string())?;
            }
            Msg::Done(f) => {
                let text = server.tokenizer.decode_text(&tokens).unwrap_or_default();
                if !stream {
                    let c = if chat {
                        json!({ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": finish_name(f) })
                    } else {
                        json!({ "index": 0, "text": text, "finish_reason": finish_name(f) })
                    };
                    return http::json(
                        s,
                        200,
                        &json!({ "id": rid, "object": object, "created": created, "model": server.model, "choices": [c], "usage": usage(tokens.len()) }),
                    );
                }
                if !started {
                    http::start_events(s)?;
                }
                let rest = text.get(shown.len()..).unwrap_or("").to_string();
                let last = json!({ "id": rid, "object": format!("{object}.chunk"), "created": created, "model": server.model, "choices": [choice(&rest, Some(finish_name(f)))] });
                http::event(s, &last.to_string())?;
                if include_usage {
                    let u = json!({ "id": rid, "object": format!("{object}.chunk"), "created": created, "model": server.model, "choices": [], "usage": usage(tokens.len()) });
                    http::event(s, &u.to_string())?;
                }
                return http::event(s, "[DONE]");
            }
        }
    }
    http::error(s, 500, "the engine dropped the request")
}
