//! The load generator against a scripted OpenAI-compatible server on loopback that does what each
//! prompt asks: stream N tokens D ms apart, wait before the first token, drop the connection
//! mid-stream, answer 500, send an event that is not JSON, or leave out the usage. The figures
//! must match what the server did.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use wattbench_openai::api::Sampling;
use wattbench_openai::load::{run, Prompt};
use wattbench_openai::metrics::{steady_window, summarize, Targets};
use wattbench_openai::{Endpoint, Failure, Load, LoadOptions, Outcome, Target};

/// Serves on a free loopback port until the test process ends; returns its base URL.
fn serve() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || answer(s));
        }
    });
    url
}

fn answer(mut s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap(),
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let req: Value = serde_json::from_slice(&body).unwrap();
    let chat = path.ends_with("/chat/completions");
    let prompt = if chat {
        req["messages"][0]["content"].as_str().unwrap().to_string()
    } else {
        req["prompt"].as_str().unwrap().to_string()
    };
    let words: Vec<&str> = prompt.split_whitespace().collect();
    let num = |i: usize, d: u64| words.get(i).and_then(|w| w.parse().ok()).unwrap_or(d);
    let head = |s: &mut TcpStream, status: &str, kind: &str| {
        write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
    };
    if words[0] == "key" && auth != "Bearer sesame" {
        head(&mut s, "401 Unauthorized", "application/json");
        let _ = s.write_all(b"{\"error\":\"bad key\"}");
        return;
    }
    if words[0] == "500" {
        head(&mut s, "500 Internal Server Error", "application/json");
        let _ = s.write_all(b"{\"error\":\"boom\"}");
        return;
    }
    let (n, gap_ms, first_ms) = match words[0] {
        "ok" => (num(1, 4), num(2, 0), 0),
        "slow" => (4, 0, num(1, 300)),
        "drop" | "badjson" | "nousage" | "key" => (4, 0, 0),
        other => panic!("unscripted prompt {other}"),
    };
    let chunk = |text: &str| {
        if chat {
            json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        } else {
            json!({"choices": [{"index": 0, "text": text, "finish_reason": null}]})
        }
    };
    if !req["stream"].as_bool().unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(first_ms + gap_ms * n));
        head(&mut s, "200 OK", "application/json");
        let text: String = (0..n).map(|i| format!("t{i} ")).collect();
        let mut v = chunk(&text);
        v["usage"] = json!({"prompt_tokens": words.len(), "completion_tokens": n});
        let _ = s.write_all(v.to_string().as_bytes());
        return;
    }
    head(&mut s, "200 OK", "text/event-stream");
    std::thread::sleep(Duration::from_millis(first_ms));
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
        if words[0] == "drop" && i == 2 {
            return; // the connection closes mid-stream
        }
        if words[0] == "badjson" && i == 1 {
            let _ = s.write_all(b"data: {\"choices\": [oops\n\n");
            return;
        }
        let _ = s.write_all(format!("data: {}\n\n", chunk(&format!("t{i} "))).as_bytes());
        let _ = s.flush();
    }
    if words[0] != "nousage" {
        let u =
            json!({"choices": [], "usage": {"prompt_tokens": words.len(), "completion_tokens": n}});
        let _ = s.write_all(format!("data: {u}\n\n").as_bytes());
    }
    let _ = s.write_all(b"data: [DONE]\n\n");
}

fn target(url: &str, endpoint: Endpoint, stream: bool) -> Target {
    Target {
        base_url: url.into(),
        model: "scripted".into(),
        api_key: None,
        endpoint,
        stream,
        ignore_eos: true,
        timeout: Duration::from_secs(10),
    }
}

const SAMPLING: Sampling = Sampling {
    temperature: 0.8,
    top_p: 0.95,
    seed: None,
};

fn prompts(texts: &[&str]) -> Vec<Prompt> {
    texts
        .iter()
        .map(|t| Prompt {
            text: t.to_string(),
            max_tokens: 16,
        })
        .collect()
}

fn go(t: &Target, texts: &[&str], load: Load) -> Vec<Outcome> {
    let opts = LoadOptions { load, seed: 1 };
    let stop = std::sync::atomic::AtomicBool::new(false);
    run(
        t,
        &prompts(texts),
        &SAMPLING,
        &opts,
        0,
        Instant::now(),
        &stop,
        &|_| {},
    )
}

fn usage(o: &Outcome) -> (Option<u64>, Option<u64>) {
    let u = o.usage.unwrap_or_default();
    (u.completion_tokens, u.prompt_tokens)
}

#[test]
fn streamed_timings_match_what_the_server_did() {
    let url = serve();
    for endpoint in [Endpoint::Completions, Endpoint::Chat] {
        let t = target(&url, endpoint, true);
        let outs = go(
            &t,
            &["ok 6 40", "slow 300", "ok 3 10"],
            Load::Closed { concurrency: 3 },
        );
        assert!(outs.iter().all(Outcome::ok), "{outs:?}");
        let a = &outs[0];
        assert_eq!(a.text, "t0 t1 t2 t3 t4 t5 ");
        assert_eq!(a.token_times.len(), 6);
        for w in a.token_times.windows(2) {
            let gap = w[1] - w[0];
            assert!((0.035..0.15).contains(&gap), "inter-token gap {gap}");
        }
        let ttft = outs[1].first_token_s.unwrap() - outs[1].start_s;
        assert!((0.29..1.0).contains(&ttft), "time to first token {ttft}");
        let s = summarize(&outs, &usage, &Targets::default());
        assert_eq!(s.output_tokens, Some(13));
        assert_eq!(s.itl_s.unwrap().n, 5 + 3 + 2);
        assert!(s.failures.is_empty() && s.usage_missing == 0);
    }
}

#[test]
fn faults_are_counted_by_reason_and_the_others_go_on() {
    let url = serve();
    let t = target(&url, Endpoint::Completions, true);
    let outs = go(
        &t,
        &[
            "ok 4 0", "drop", "500", "badjson", "nousage", "ok 2 0", "key",
        ],
        Load::Closed { concurrency: 2 },
    );
    let f: Vec<Option<Failure>> = outs.iter().map(|o| o.failure).collect();
    assert_eq!(
        f,
        [
            None,
            Some(Failure::Truncated),
            Some(Failure::Http(500)),
            Some(Failure::InvalidEvent),
            None,
            None,
            Some(Failure::Http(401)),
        ]
    );
    assert_eq!(outs[1].text, "t0 t1 ", "what came before the drop is kept");
    assert!(outs[6].detail.as_deref().unwrap().contains("bad key"));
    let s = summarize(&outs, &usage, &Targets::default());
    assert_eq!((s.requests, s.succeeded, s.usage_missing), (7, 3, 1));
    assert_eq!(s.output_tokens, None, "one success has no usage");
    let reasons: Vec<(&str, usize)> = s.failures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        reasons,
        [
            ("http_401", 1),
            ("http_500", 1),
            ("invalid_event", 1),
            ("truncated_stream", 1)
        ]
    );
    // The key goes in the Authorization header.
    let mut keyed = t.clone();
    keyed.api_key = Some("sesame".into());
    assert!(go(&keyed, &["key"], Load::Closed { concurrency: 1 })[0].ok());
}

#[test]
fn a_server_that_is_not_there_and_a_timeout_are_faults_too() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let outs = go(
        &target(&url, Endpoint::Completions, true),
        &["ok 1 0"],
        Load::Closed { concurrency: 1 },
    );
    assert_eq!(outs[0].failure, Some(Failure::Connection));
    let mut t = target(&serve(), Endpoint::Completions, true);
    t.timeout = Duration::from_millis(200);
    let outs = go(
        &t,
        &["slow 2000", "ok 1 0"],
        Load::Closed { concurrency: 2 },
    );
    assert_eq!(
        outs[0].failure,
        Some(Failure::Timeout),
        "{:?}",
        outs[0].detail
    );
    assert!(outs[0].end_s - outs[0].start_s < 1.0);
    assert!(outs[1].ok());
}

#[test]
fn whole_responses_count_their_usage() {
    let url = serve();
    let t = target(&url, Endpoint::Chat, false);
    let outs = go(&t, &["ok 5 10", "500"], Load::Closed { concurrency: 2 });
    assert!(outs[0].ok() && outs[0].first_token_s.is_none());
    assert_eq!(outs[0].text, "t0 t1 t2 t3 t4 ");
    assert_eq!(usage(&outs[0]).0, Some(5));
    assert_eq!(outs[1].failure, Some(Failure::Http(500)));
}

#[test]
fn a_closed_loop_keeps_its_concurrency_and_an_open_loop_its_rate() {
    let url = serve();
    let t = target(&url, Endpoint::Completions, true);
    let texts = ["ok 5 20"; 12];
    let outs = go(&t, &texts, Load::Closed { concurrency: 4 });
    // At most 4 in flight at any instant, and 4 at some.
    let mut most = 0;
    for o in &outs {
        let at = o.start_s + 1e-6;
        most = most.max(
            outs.iter()
                .filter(|p| p.start_s <= at && p.end_s > at)
                .count(),
        );
    }
    assert_eq!(most, 4);
    let (a, b) = steady_window(&outs, Some(4)).unwrap();
    assert!(b > a);
    let outs = go(
        &t,
        &["ok 1 0"; 10],
        Load::Open {
            rate: 20.0,
            poisson: false,
            max_concurrency: None,
        },
    );
    let starts: Vec<f64> = outs.iter().map(|o| o.start_s).collect();
    // Each request leaves on its schedule (every 50 ms), within a thread start or two.
    for (i, s) in starts.iter().enumerate() {
        let late = s - starts[0] - 0.05 * i as f64;
        assert!(
            (-0.03..0.03).contains(&late),
            "request {i} is {late} s off: {starts:?}"
        );
    }
}
