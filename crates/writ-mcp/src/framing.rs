//! The MCP stdio transport: each JSON-RPC message is one line of UTF-8 JSON
//! terminated by `\n`, with no embedded newline (MCP specification,
//! "Transports", stdio). Lines are bounded: a line longer than the limit is
//! consumed and reported as [`FrameError::TooLarge`], never buffered whole.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// The longest message accepted in either direction, in bytes (64 MiB:
/// room for a base64 image or a large file read, and a bound on what one
/// message can make the proxy hold).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A line longer than the limit was read and dropped.
    #[error("a message of more than {limit} bytes was dropped (the limit of writ mcp-proxy)")]
    TooLarge { limit: usize },
    #[error("reading a message: {0}")]
    Io(#[from] std::io::Error),
}

/// Read the next message (without its line end; a `\r` before the `\n` is
/// dropped, blank lines are skipped). `Ok(None)` at the end of the stream.
pub async fn read_message<R: AsyncBufRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut out = Vec::new();
    let mut too_large = false;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            if too_large {
                return Err(FrameError::TooLarge { limit });
            }
            if out.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            // The last message of a stream that ended without a newline.
            return Ok(Some(out));
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                if !too_large && out.len() + i <= limit {
                    // One byte to spare: a forwarded message gets its `\n`
                    // back in place (see `write_message`), not by a copy.
                    out.reserve(i + 1);
                    out.extend_from_slice(buf.get(..i).unwrap_or_default());
                } else {
                    too_large = true;
                }
                r.consume(i + 1);
                if too_large {
                    return Err(FrameError::TooLarge { limit });
                }
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                if out.iter().all(u8::is_ascii_whitespace) {
                    out.clear();
                    continue;
                }
                return Ok(Some(out));
            }
            None => {
                let n = buf.len();
                if !too_large && out.len() + n <= limit {
                    out.extend_from_slice(buf);
                } else {
                    too_large = true;
                    out = Vec::new();
                }
                r.consume(n);
            }
        }
    }
}

/// Write one message and its `\n` in one write, then flush. `msg` must hold
/// no newline (serde_json never writes one; a line read by [`read_message`]
/// has none). One write, not two (as strace showed it before): a reader
/// woken by the message alone finds half a line and must wait for the
/// `\n`; no latency difference was measurable, one syscall fewer is
/// certain.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut msg: Vec<u8>,
) -> std::io::Result<()> {
    debug_assert!(!msg.contains(&b'\n'), "a message must be one line");
    msg.push(b'\n');
    w.write_all(&msg).await?;
    w.flush().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    async fn all(input: &[u8], limit: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = tokio::io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        loop {
            match read_message(&mut r, limit).await {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn lines_are_messages_crlf_and_blank_lines_tolerated() {
        let got = all(b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}", 100).await;
        assert_eq!(
            got,
            vec![
                Ok(b"{\"a\":1}".to_vec()),
                Ok(b"{\"b\":2}".to_vec()),
                Ok(b"{\"c\":3}".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn an_oversized_line_is_dropped_and_the_next_one_read() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\n{\"ok\":true}\n");
        let got = all(&input, 20).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].as_ref().unwrap_err().contains("more than 20 bytes"));
        assert_eq!(got[1], Ok(b"{\"ok\":true}".to_vec()));
        // Exactly at the limit is fine.
        let got = all(b"0123456789\n", 10).await;
        assert_eq!(got, vec![Ok(b"0123456789".to_vec())]);
    }

    /// Records each write it is handed (each would be one `write(2)` on a
    /// pipe).
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.push(buf.to_vec());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_message_and_its_newline_are_one_write() {
        let mut w = Writes::default();
        write_message(&mut w, b"{\"a\":1}".to_vec()).await.unwrap();
        write_message(&mut w, b"{\"b\":2}".to_vec()).await.unwrap();
        assert_eq!(w.0, vec![b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n".to_vec()]);
    }
}
