//! The parts of the MCP Streamable HTTP transport that need no socket: a
//! message as it travels in an HTTP body or an event's data turned into the
//! line the proxy reads ([`to_line`]), and the event streams of one session
//! with their event ids, kept so that a client whose stream dropped can
//! resume it ([`Streams`]).
//!
//! The proxy decides on the exact bytes it forwards. A message received over
//! HTTP may be spread over lines; JSON strings cannot hold a raw line end, so
//! every raw `\n` and `\r` in valid JSON is whitespace between tokens, and
//! [`to_line`] turns each into a space: the same bytes otherwise, so two
//! keys that fold to one are still seen and refused (`keys`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;

/// Why a body is not one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("more than {limit} bytes")]
    TooLarge { limit: usize },
}

/// `body` as one line of the proxy's framing (no line end), if it is JSON.
pub fn to_line(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    if body.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| BodyError::NotJson(e.to_string()))?;
    Ok(body
        .iter()
        .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b })
        .collect())
}

/// Streams a session holds at most (each request in flight has one).
pub const STREAMS_MAX: usize = 4096;

/// Streams a session keeps after they ended and were sent whole, for a
/// client whose connection broke just before their end.
pub const ENDED_STREAMS_KEPT: usize = 16;

/// The event streams of one session: the standalone stream (number 0, the
/// client's GET) and one per request the client posted. Each event is
/// numbered within its stream, and its id is `STREAM-N`; event 0 of each
/// stream is the priming event (an id and empty data) that lets a client
/// resume before the first message. A stream is kept until it ended and was
/// sent whole, and the last [`ENDED_STREAMS_KEPT`] of those after that; a
/// session holding more than its byte limit in events is over its limit
/// ([`Streams::push`] says so) and must end.
#[derive(Debug)]
pub struct Streams {
    streams: HashMap<u64, Stream>,
    next: u64,
    ended: VecDeque<u64>,
    bytes: usize,
    bytes_max: usize,
}

#[derive(Debug)]
struct Stream {
    /// Events `first + 1` on (the priming event, 0, is not stored; the
    /// standalone stream drops what was sent long ago).
    events: VecDeque<Arc<str>>,
    first: u64,
    /// The events a reader has sent on (of the standalone stream, where a
    /// new GET without `Last-Event-ID` carries on from).
    sent: u64,
    done: bool,
    /// The number of events, for readers waiting for more; bumped on the
    /// end too.
    tick: watch::Sender<u64>,
    /// Which reader may send this stream (a resume takes it over).
    reader: u64,
}

/// Where a reader of a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub stream: u64,
    /// The number of the last event the client has (0: the priming event).
    pub after: u64,
}

impl Cursor {
    /// `STREAM-N`, as a client sends it back in `Last-Event-ID`.
    pub fn parse(id: &str) -> Option<Cursor> {
        let (s, n) = id.split_once('-')?;
        let stream = s.parse().ok()?;
        let after = n.parse().ok()?;
        Some(Cursor { stream, after })
    }
}

/// What a reader gets next.
#[derive(Debug)]
pub enum Next {
    /// Events to send: `(id, data)`.
    Events(Vec<(String, Arc<str>)>),
    /// Nothing yet: wait on the receiver.
    Wait(watch::Receiver<u64>),
    /// The stream ended and the reader has it all.
    End,
    /// Another reader took the stream over, or it is gone.
    Gone,
}

/// The number of the standalone stream.
pub const STANDALONE: u64 = 0;

/// Sent events of the standalone stream kept for a resume.
pub const STANDALONE_SENT_KEPT: usize = 64;

impl Streams {
    /// A session's streams, holding at most `bytes_max` bytes of events.
    pub fn new(bytes_max: usize) -> Streams {
        let mut s = Streams {
            streams: HashMap::new(),
            next: STANDALONE + 1,
            ended: VecDeque::new(),
            bytes: 0,
            bytes_max,
        };
        s.streams.insert(STANDALONE, Stream::new());
        s
    }

    /// A new stream (for a posted request); its number. At
    /// [`STREAMS_MAX`] streams the oldest that ended goes first (its
    /// client never came back for it); `None` when every one is still
    /// waiting for its response.
    pub fn open(&mut self) -> Option<u64> {
        if self.streams.len() >= STREAMS_MAX {
            let oldest = self
                .streams
                .iter()
                .filter(|(n, s)| s.done && **n != STANDALONE)
                .map(|(n, _)| *n)
                .min()?;
            if let Some(s) = self.streams.remove(&oldest) {
                self.bytes -= s.events.iter().map(|e| e.len()).sum::<usize>();
            }
            self.ended.retain(|n| *n != oldest);
        }
        let n = self.next;
        self.next += 1;
        self.streams.insert(n, Stream::new());
        Some(n)
    }

    /// Append `data` to `stream`; `false` if the session is now over its
    /// byte limit or the stream is unknown.
    pub fn push(&mut self, stream: u64, data: Arc<str>) -> bool {
        let Some(s) = self.streams.get_mut(&stream) else {
            return false;
        };
        self.bytes += data.len();
        s.events.push_back(data);
        let n = s.first + s.events.len() as u64;
        s.tick.send_replace(n);
        self.bytes <= self.bytes_max
    }

    /// No more events on `stream`.
    pub fn end(&mut self, stream: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.done = true;
            s.tick.send_modify(|_| {});
        }
    }

    /// End every stream (the session ended).
    pub fn end_all(&mut self) {
        for s in self.streams.values_mut() {
            s.done = true;
            s.tick.send_modify(|_| {});
        }
    }

    /// A reader sent `stream` up to event `upto`. The standalone stream
    /// then keeps only the last [`STANDALONE_SENT_KEPT`] of those.
    pub fn mark_sent(&mut self, stream: u64, upto: u64) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.sent = s.sent.max(upto);
        if stream != STANDALONE {
            return;
        }
        while s.first + (STANDALONE_SENT_KEPT as u64) < s.sent {
            let Some(old) = s.events.pop_front() else {
                break;
            };
            s.first += 1;
            self.bytes -= old.len();
        }
    }

    /// How far `stream` was sent.
    pub fn sent(&self, stream: u64) -> u64 {
        self.streams.get(&stream).map_or(0, |s| s.sent)
    }

    /// A new reader of `stream`, replacing any other: its id.
    pub fn attach(&mut self, stream: u64) -> Option<u64> {
        let s = self.streams.get_mut(&stream)?;
        s.reader += 1;
        // Wake the reader being replaced, which then finds it is gone.
        s.tick.send_modify(|_| {});
        Some(s.reader)
    }

    /// What reader `reader` of `cursor.stream` sends next.
    pub fn next(&mut self, cursor: Cursor, reader: u64) -> Next {
        let Some(s) = self.streams.get(&cursor.stream) else {
            return Next::Gone;
        };
        if s.reader != reader {
            return Next::Gone;
        }
        let have = s.first + s.events.len() as u64;
        if cursor.after < s.first {
            // Dropped long ago: this cannot be resumed.
            return Next::Gone;
        }
        if cursor.after < have {
            let from = (cursor.after - s.first) as usize;
            let events = s
                .events
                .range(from..)
                .enumerate()
                .map(|(i, d)| {
                    (
                        format!("{}-{}", cursor.stream, cursor.after + 1 + i as u64),
                        Arc::clone(d),
                    )
                })
                .collect();
            return Next::Events(events);
        }
        if s.done {
            self.sent_whole(cursor.stream);
            return Next::End;
        }
        Next::Wait(s.tick.subscribe())
    }

    /// Whether `stream` is known (for a resume).
    pub fn has(&self, stream: u64) -> bool {
        self.streams.contains_key(&stream)
    }

    /// The last event number of `stream`.
    pub fn last(&self, stream: u64) -> u64 {
        self.streams
            .get(&stream)
            .map_or(0, |s| s.first + s.events.len() as u64)
    }

    fn sent_whole(&mut self, stream: u64) {
        if stream == STANDALONE || self.ended.contains(&stream) {
            return;
        }
        self.ended.push_back(stream);
        while self.ended.len() > ENDED_STREAMS_KEPT {
            if let Some(old) = self.ended.pop_front() {
                if let Some(s) = self.streams.remove(&old) {
                    self.bytes -= s.events.iter().map(|e| e.len()).sum::<usize>();
                }
            }
        }
    }
}

impl Stream {
    fn new() -> Stream {
        Stream {
            events: VecDeque::new(),
            first: 0,
            sent: 0,
            done: false,
            tick: watch::channel(0).0,
            reader: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_body_becomes_one_line_with_its_bytes_otherwise_kept() {
        let body = b"{\r\n  \"id\": 1,\n  \"Method\": \"a\", \"method\": \"b\"\n}";
        let line = to_line(body, 1024).unwrap();
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        assert_eq!(line.len(), body.len());
        // Still two keys that fold to one: the proxy refuses it.
        assert!(crate::keys::check_one_meaning(&line).is_err());
        assert!(matches!(
            to_line(b"{\"a\":\"x\ny\"}", 1024),
            Err(BodyError::NotJson(_))
        ));
        assert!(matches!(to_line(b"{}", 1), Err(BodyError::TooLarge { .. })));
    }

    #[test]
    fn a_resumed_stream_continues_after_the_last_event_the_client_has() {
        let mut s = Streams::new(1 << 20);
        let n = s.open().unwrap();
        let r1 = s.attach(n).unwrap();
        assert!(s.push(n, "a".into()));
        assert!(s.push(n, "b".into()));
        let Next::Events(ev) = s.next(
            Cursor {
                stream: n,
                after: 0,
            },
            r1,
        ) else {
            panic!()
        };
        assert_eq!(ev[0].0, format!("{n}-1"));
        // The connection broke after event 1; the client resumes from it.
        let r2 = s.attach(n).unwrap();
        assert!(matches!(
            s.next(
                Cursor {
                    stream: n,
                    after: 2
                },
                r1
            ),
            Next::Gone
        ));
        let c = Cursor::parse(&format!("{n}-1")).unwrap();
        let Next::Events(ev) = s.next(c, r2) else {
            panic!()
        };
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].0.as_str(), &*ev[0].1), (&*format!("{n}-2"), "b"));
        assert!(matches!(
            s.next(
                Cursor {
                    stream: n,
                    after: 2
                },
                r2
            ),
            Next::Wait(_)
        ));
        s.end(n);
        assert!(matches!(
            s.next(
                Cursor {
                    stream: n,
                    after: 2
                },
                r2
            ),
            Next::End
        ));
    }

    #[test]
    fn the_standalone_stream_keeps_only_the_last_sent_events() {
        let mut s = Streams::new(1 << 20);
        let r = s.attach(STANDALONE).unwrap();
        for i in 0..200 {
            assert!(s.push(STANDALONE, format!("{i}").into()));
        }
        s.mark_sent(STANDALONE, 150);
        assert_eq!(s.sent(STANDALONE), 150);
        // Long sent: gone. Recently sent: resumable, from the right event.
        assert!(matches!(
            s.next(
                Cursor {
                    stream: STANDALONE,
                    after: 10
                },
                r
            ),
            Next::Gone
        ));
        let Next::Events(ev) = s.next(
            Cursor {
                stream: STANDALONE,
                after: 140,
            },
            r,
        ) else {
            panic!()
        };
        assert_eq!((ev[0].0.as_str(), &*ev[0].1), ("0-141", "140"));
        assert_eq!(ev.len(), 60);
        s.end_all();
        assert!(matches!(
            s.next(
                Cursor {
                    stream: STANDALONE,
                    after: 200
                },
                r
            ),
            Next::End
        ));
    }

    #[test]
    fn ended_streams_are_dropped_after_the_last_few_and_bytes_are_bounded() {
        let mut s = Streams::new(100);
        let mut first = None;
        for _ in 0..=ENDED_STREAMS_KEPT {
            let n = s.open().unwrap();
            first.get_or_insert(n);
            let r = s.attach(n).unwrap();
            assert!(s.push(n, "x".into()));
            s.end(n);
            assert!(matches!(
                s.next(
                    Cursor {
                        stream: n,
                        after: 1
                    },
                    r
                ),
                Next::End
            ));
        }
        assert!(!s.has(first.unwrap()));
        let n = s.open().unwrap();
        assert!(!s.push(n, "y".repeat(200).into()));
        // Streams are bounded in number too: the oldest ended one goes
        // first, and none opens while every one still waits.
        let mut s = Streams::new(1 << 20);
        let first = s.open().unwrap();
        s.end(first);
        for _ in 1..STREAMS_MAX - 1 {
            s.open().unwrap();
        }
        assert!(s.open().is_some());
        assert!(!s.has(first));
        assert!(s.open().is_none());
        assert!(Cursor::parse("x-1").is_none() && Cursor::parse("3").is_none());
    }
}
