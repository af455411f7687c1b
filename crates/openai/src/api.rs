//! The two OpenAI endpoints a benchmark drives, their request bodies, and what a response or a
//! streamed chunk carries.

use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`: the prompt as given.
    Completions,
    /// `/v1/chat/completions`: the prompt as one user message (the server applies its template).
    Chat,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// A server and how to ask it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:8000` or `https://host/prefix` (a trailing `/v1` is accepted).
    pub base_url: String,
    /// The model name the server serves.
    pub model: String,
    /// Sent as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    pub endpoint: Endpoint,
    /// Server-sent events, one per token or so (else one JSON response per request).
    pub stream: bool,
    /// Ask the server to ignore end-of-sequence tokens (`ignore_eos`, a vLLM/SGLang extension
    /// that other servers ignore), so that every response has `max_tokens` tokens.
    pub ignore_eos: bool,
    /// The longest a request may take, from sending it to its last byte.
    pub timeout: Duration,
}

impl Target {
    /// The endpoint's full URL.
    pub fn url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}{}", self.endpoint.path())
    }
}

/// Sampling settings of every request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
    pub seed: Option<u64>,
}

/// The JSON body of one request.
pub fn body(t: &Target, prompt: &str, max_tokens: u32, s: &Sampling) -> Value {
    let mut b = json!({
        "model": t.model,
        "max_tokens": max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "stream": t.stream,
    });
    match t.endpoint {
        Endpoint::Completions => b["prompt"] = json!(prompt),
        Endpoint::Chat => b["messages"] = json!([{ "role": "user", "content": prompt }]),
    }
    if t.stream {
        b["stream_options"] = json!({ "include_usage": true });
    }
    if t.ignore_eos {
        b["ignore_eos"] = json!(true);
        b["min_tokens"] = json!(max_tokens);
    }
    if let Some(seed) = s.seed {
        b["seed"] = json!(seed);
    }
    b
}

/// The text, finish reason and usage one chunk (or a whole response) carries.
#[derive(Debug, Default, PartialEq)]
pub struct Piece {
    /// Whether the chunk reports generated tokens: it has text, or an empty text that is not the
    /// final chunk (a token whose characters the server holds back until they are whole) and not
    /// a chat role announcement.
    pub token: bool,
    pub text: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// Reads a chunk or response of `endpoint`; None when it is not an object of that shape.
pub fn piece(endpoint: Endpoint, v: &Value) -> Option<Piece> {
    let obj = v.as_object()?;
    let mut p = Piece::default();
    if let Some(choices) = obj.get("choices") {
        for c in choices.as_array()? {
            let text = match endpoint {
                Endpoint::Completions => c.get("text"),
                Endpoint::Chat => c
                    .get("delta")
                    .or_else(|| c.get("message"))
                    .and_then(|m| m.get("content")),
            };
            let finish = c.get("finish_reason").and_then(Value::as_str);
            let role = c.get("delta").is_some_and(|d| d.get("role").is_some());
            if let Some(t) = text.and_then(Value::as_str) {
                p.text.push_str(t);
                p.token |= !t.is_empty() || (finish.is_none() && !role);
            }
            if let Some(f) = finish {
                p.finish_reason = Some(f.to_string());
            }
        }
    } else if obj.get("usage").is_none() {
        return None;
    }
    if let Some(u) = obj.get("usage").filter(|u| !u.is_null()) {
        p.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
        p.completion_tokens = u.get("completion_tokens").and_then(Value::as_u64);
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: Endpoint) -> Target {
        Target {
            base_url: "http://127.0.0.1:8000/v1/".into(),
            model: "m".into(),
            api_key: None,
            endpoint,
            stream: true,
            ignore_eos: true,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn bodies_follow_the_endpoint() {
        let s = Sampling {
            temperature: 0.8,
            top_p: 0.95,
            seed: Some(3),
        };
        let t = target(Endpoint::Completions);
        assert_eq!(t.url(), "http://127.0.0.1:8000/v1/completions");
        let b = body(&t, "hi", 16, &s);
        assert_eq!(b["prompt"], "hi");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(
            (b["ignore_eos"].clone(), b["min_tokens"].clone()),
            (json!(true), json!(16))
        );
        let c = target(Endpoint::Chat);
        assert_eq!(c.url(), "http://127.0.0.1:8000/v1/chat/completions");
        assert_eq!(body(&c, "hi", 16, &s)["messages"][0]["content"], "hi");
    }

    #[test]
    fn pieces_of_chunks_and_responses() {
        let chunk = json!({"choices": [{"index": 0, "text": "Par", "finish_reason": null}]});
        let p = piece(Endpoint::Completions, &chunk).unwrap();
        assert_eq!((p.text.as_str(), p.token), ("Par", true));
        // A token whose characters are held back, the final chunk, a chat role announcement.
        let held = json!({"choices": [{"index": 0, "text": "", "finish_reason": null}]});
        assert!(piece(Endpoint::Completions, &held).unwrap().token);
        let last = json!({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]});
        assert!(!piece(Endpoint::Completions, &last).unwrap().token);
        let role = json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]});
        assert!(!piece(Endpoint::Chat, &role).unwrap().token);
        let chat = json!({"choices": [{"delta": {"content": "is"}, "finish_reason": "stop"}]});
        let p = piece(Endpoint::Chat, &chat).unwrap();
        assert_eq!(
            (p.text.as_str(), p.finish_reason.as_deref()),
            ("is", Some("stop"))
        );
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}});
        let p = piece(Endpoint::Chat, &usage).unwrap();
        assert_eq!((p.prompt_tokens, p.completion_tokens), (Some(5), Some(7)));
        assert!(piece(Endpoint::Chat, &json!([1, 2])).is_none());
        assert!(piece(Endpoint::Chat, &json!({"error": "x"})).is_none());
    }
}
