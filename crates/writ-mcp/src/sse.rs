//! Server-sent events (the HTML Standard's `text/event-stream`), as the MCP
//! Streamable HTTP transport uses them: each event's `data` is one JSON-RPC
//! message, its `id` what a client resumes from (`Last-Event-ID`).
//!
//! [`Parser`] reads a stream in pieces as they arrive and is bounded: a line
//! or an event's data longer than its limit is an error, never buffered
//! whole. [`event`] writes one.

/// Why an event stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event stream line or event of more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("an event stream that is not UTF-8")]
    NotUtf8,
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's type (`message` when none was named).
    pub kind: String,
    /// Its data lines, joined with `\n`.
    pub data: String,
    /// The stream's last event id when it was dispatched.
    pub id: Option<String>,
}

/// An incremental event stream reader.
#[derive(Debug)]
pub struct Parser {
    limit: usize,
    line: Vec<u8>,
    /// The last piece ended in `\r`: a `\n` starting the next is that
    /// line end's second half.
    after_cr: bool,
    data: String,
    has_data: bool,
    kind: String,
    last_id: Option<String>,
    retry_ms: Option<u64>,
}

impl Parser {
    /// A reader refusing lines and events longer than `limit` bytes.
    pub fn new(limit: usize) -> Parser {
        Parser {
            limit,
            line: Vec::new(),
            after_cr: false,
            data: String::new(),
            has_data: false,
            kind: String::new(),
            last_id: None,
            retry_ms: None,
        }
    }

    /// The last event id seen (set by a priming event too, whose data is
    /// empty and which is not dispatched).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Forget a line or event not finished when a connection broke (the
    /// last event id and the reconnection time stay): a resumed stream
    /// starts afresh.
    pub fn reset_partial(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.data.clear();
        self.has_data = false;
        self.kind.clear();
    }

    /// The reconnection time the stream asked for, if any.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Read `bytes`; the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut out = Vec::new();
        let mut rest = bytes;
        if self.after_cr {
            self.after_cr = false;
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
        }
        while let Some(i) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = rest.split_at(i);
            self.extend(head)?;
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut out)?;
            rest = match tail {
                [b'\r', b'\n', r @ ..] => r,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, r @ ..] => r,
                [] => &[],
            };
        }
        self.extend(rest)?;
        Ok(out)
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(SseError::TooLarge { limit: self.limit });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.kind = value.to_owned(),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let kind = std::mem::take(&mut self.kind);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        out.push(Event {
            kind: if kind.is_empty() {
                "message".into()
            } else {
                kind
            },
            data,
            id: self.last_id.clone(),
        });
    }
}

/// One event: `id` and the message as `data` (a line per line of it).
pub fn event(id: &str, data: &str) -> String {
    let mut s = String::with_capacity(data.len() + id.len() + 24);
    s.push_str("id: ");
    s.push_str(id);
    s.push('\n');
    if data.is_empty() {
        s.push_str("data:\n");
    }
    for line in data.split('\n') {
        if !line.is_empty() || !data.is_empty() {
            s.push_str("data: ");
            s.push_str(line.strip_suffix('\r').unwrap_or(line));
            s.push('\n');
        }
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn all(p: &mut Parser, pieces: &[&[u8]]) -> Vec<Event> {
        pieces.iter().flat_map(|b| p.push(b).unwrap()).collect()
    }

    #[test]
    fn events_across_pieces_and_line_ends() {
        let mut p = Parser::new(1024);
        let ev = all(
            &mut p,
            &[
                b"id: 1-0\r",
                b"\ndata:\r\n\r\n: keep-alive\n",
                b"event: message\nid: 1-1\ndata: {\"a\":",
                b"1}\n\nda",
                b"ta: x\rdata: y\r\r",
            ],
        );
        assert_eq!(
            ev,
            vec![
                Event {
                    kind: "message".into(),
                    data: String::new(),
                    id: Some("1-0".into())
                },
                Event {
                    kind: "message".into(),
                    data: "{\"a\":1}".into(),
                    id: Some("1-1".into())
                },
                Event {
                    kind: "message".into(),
                    data: "x\ny".into(),
                    id: Some("1-1".into())
                },
            ]
        );
    }

    #[test]
    fn a_priming_event_sets_the_last_id_and_dispatches_nothing() {
        let mut p = Parser::new(1024);
        assert!(p.push(b"id: 7-0\nretry: 250\n\n").unwrap().is_empty());
        assert_eq!(p.last_id(), Some("7-0"));
        assert_eq!(p.retry_ms(), Some(250));
    }

    #[test]
    fn a_resumed_stream_forgets_what_the_broken_one_left_unfinished() {
        let mut p = Parser::new(1024);
        assert!(p.push(b"id: 1-1\ndata: {\"half\":").unwrap().is_empty());
        p.reset_partial();
        let ev = p.push(b"id: 1-2\ndata: {}\n\n").unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "{}");
        assert_eq!(p.last_id(), Some("1-2"));
    }

    #[test]
    fn lines_and_data_are_bounded() {
        let mut p = Parser::new(8);
        assert_eq!(
            p.push(b"data: 0123456789").unwrap_err(),
            SseError::TooLarge { limit: 8 }
        );
        let mut p = Parser::new(12);
        assert!(p.push(b"data: 12345\n").is_ok());
        assert!(p.push(b"data: 12345\n").is_ok());
        assert!(p.push(b"data: 12345\n").is_err());
    }

    #[test]
    fn written_events_read_back() {
        let mut p = Parser::new(1024);
        let text = event("3-2", "{\"x\":\"a\"}") + &event("3-0", "");
        let ev = p.push(text.as_bytes()).unwrap();
        // An empty `data:` line is an event with empty data (the HTML
        // Standard dispatches it); readers skip it.
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].data, "");
        assert_eq!(ev[0].data, "{\"x\":\"a\"}");
        assert_eq!(ev[0].id.as_deref(), Some("3-2"));
        assert_eq!(p.last_id(), Some("3-0"));
    }
}
