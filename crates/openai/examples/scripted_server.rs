//! A fast scripted OpenAI-compatible server for measuring load generators: every request to
//! `/v1/completions` or `/v1/chat/completions` is answered with `max_tokens` (or
//! `max_completion_tokens`) streamed tokens (one
//! event each, `--gap-us` apart; 0 sends them as fast as the socket takes them), its usage and
//! `[DONE]`. It runs no model, so the client's own cost and timing are what shows.
//!
//! `cargo run --release -p wattbench-openai --example scripted_server -- --port 8800 --gap-us 1000`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn answer(s: TcpStream, gap: Duration) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = std::io::BufWriter::with_capacity(1 << 16, s);
    loop {
        // One request per connection turn; keep-alive until the client closes.
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let n = req["max_tokens"]
            .as_u64()
            .or_else(|| req["max_completion_tokens"].as_u64())
            .unwrap_or(16);
        let chat = path.ends_with("/chat/completions");
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )?;
        let chunk = |w: &mut std::io::BufWriter<TcpStream>, data: &str| -> std::io::Result<()> {
            let event = format!("data: {data}\n\n");
            write!(w, "{:x}\r\n{event}\r\n", event.len())?;
            w.flush()
        };
        let start = Instant::now();
        for i in 0..n {
            if !gap.is_zero() {
                let due = start + gap * (i as u32 + 1);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let c = if chat {
                format!("{{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}},\"finish_reason\":null}}]}}")
            } else {
                format!(
                    "{{\"choices\":[{{\"index\":0,\"text\":\"t{i} \",\"finish_reason\":null}}]}}"
                )
            };
            chunk(&mut w, &c)?;
        }
        chunk(
            &mut w,
            &format!("{{\"choices\":[],\"usage\":{{\"prompt_tokens\":8,\"completion_tokens\":{n},\"total_tokens\":{}}}}}", n + 8),
        )?;
        chunk(&mut w, "[DONE]")?;
        write!(w, "0\r\n\r\n")?;
        w.flush()?;
    }
}

fn main() {
    let port = arg("--port", 8800) as u16;
    let gap = Duration::from_micros(arg("--gap-us", 0));
    let l = TcpListener::bind(("127.0.0.1", port)).expect("binding the port");
    eprintln!("scripted server on http://{}", l.local_addr().unwrap());
    for s in l.incoming().flatten() {
        let _ = s.set_nodelay(true);
        std::thread::spawn(move || answer(s, gap));
    }
}
