//! Just enough HTTP/1.1 for an API server: a request line, headers and a `Content-Length` body
//! in; a status with a JSON body, or a stream of server-sent events, out. Every response closes
//! its connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 16 << 20;

pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request; an error string for what is not HTTP (answered with 400).
pub fn read(stream: &TcpStream) -> Result<Request, String> {
    let mut r = BufReader::new(stream);
    let mut head = 0;
    let mut line = String::new();
    let mut next = |line: &mut String| -> Result<(), String> {
        line.clear();
        let n = r.read_line(line).map_err(|e| e.to_string())?;
        head += n;
        if n == 0 || head > MAX_HEAD {
            return Err("the request head is cut short or too long".into());
        }
        Ok(())
    };
    next(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(format!("not an HTTP request line: {:?}", line.trim_end()));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        next(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(Ok(0), |(_, v)| {
            v.parse().map_err(|_| "a bad Content-Length".to_string())
        })?;
    if len > MAX_BODY {
        return Err(format!("a body of {len} bytes is more than {MAX_BODY}"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// A whole JSON response.
pub fn json(mut s: &TcpStream, status: u16, body: &serde_json::Value) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        s,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        reason(status),
        text.len()
    )?;
    s.flush()
}

/// A whole plain-text response.
pub fn text(mut s: &TcpStream, status: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    let auth = if status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    write!(
        s,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    s.flush()
}

/// An OpenAI-style error.
pub fn error(s: &TcpStream, status: u16, message: &str) -> std::io::Result<()> {
    json(
        s,
        status,
        &serde_json::json!({ "error": { "message": message, "type": "invalid_request_error", "code": status } }),
    )
}

/// Starts a stream of server-sent events.
pub fn start_events(mut s: &TcpStream) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()
}

/// One event (`data: ...`), sent at once.
pub fn event(mut s: &TcpStream, data: &str) -> std::io::Result<()> {
    write!(s, "data: {data}\n\n")?;
    s.flush()
}
