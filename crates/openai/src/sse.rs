//! Server-sent events: `data:` lines (several join with newlines), ended by a blank line;
//! comments (`:`) and other fields are skipped.

use std::io::BufRead;

/// What the stream gave next.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The data of one event.
    Data(String),
    /// The stream ended cleanly (end of input after a complete event, or none at all).
    End,
}

pub struct SseReader<R> {
    inner: R,
    line: String,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(inner: R) -> SseReader<R> {
        SseReader {
            inner,
            line: String::new(),
        }
    }

    /// The next event. An I/O error (a reset connection, a timeout, a chunked body cut short)
    /// is returned as such; input that ends inside an event yields that event's data first.
    pub fn next_event(&mut self) -> std::io::Result<Event> {
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            let n = self.inner.read_line(&mut self.line)?;
            if n == 0 {
                return Ok(data.map_or(Event::End, Event::Data));
            }
            let line = self.line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(d) = data.take() {
                    return Ok(Event::Data(d));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            if field == "data" {
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<Event> {
        let mut r = SseReader::new(text.as_bytes());
        let mut out = Vec::new();
        loop {
            let e = r.next_event().unwrap();
            let end = e == Event::End;
            out.push(e);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn events_are_data_lines_ended_by_a_blank_line() {
        let got = events(": keep-alive\n\ndata: {\"a\":1}\n\ndata:x\ndata: y\r\n\r\nevent: ping\nid: 3\n\ndata: [DONE]\n\n");
        assert_eq!(
            got,
            [
                Event::Data("{\"a\":1}".into()),
                Event::Data("x\ny".into()),
                Event::Data("[DONE]".into()),
                Event::End
            ]
        );
    }

    #[test]
    fn input_ending_inside_an_event_still_yields_it() {
        assert_eq!(
            events("data: {\"b\":2}"),
            [Event::Data("{\"b\":2}".into()), Event::End]
        );
        assert_eq!(events(""), [Event::End]);
    }
}
