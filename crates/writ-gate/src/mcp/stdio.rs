//! The proxy's standard input and output: read and written through the
//! reactor when they are pipes, their file status flags put back on exit,
//! and the client's input ended early on a stop.

use tokio::io::AsyncBufRead;

/// Read buffer of each pipe.
pub(crate) const PIPE_BUFFER_BYTES: usize = 256 * 1024;

/// The file status flags of standard input and output as they were, put
/// back when dropped. `O_NONBLOCK` is a flag of the open file, shared with
/// every process that holds it (the shell that started the proxy, a command
/// that reads the same pipe after it).
pub(crate) struct StdioFlags([Option<rustix::fs::OFlags>; 2]);

impl StdioFlags {
    pub(crate) fn save() -> StdioFlags {
        StdioFlags([
            rustix::fs::fcntl_getfl(std::io::stdin()).ok(),
            rustix::fs::fcntl_getfl(std::io::stdout()).ok(),
        ])
    }
}

impl Drop for StdioFlags {
    fn drop(&mut self) {
        if let Some(f) = self.0[0] {
            let _ = rustix::fs::fcntl_setfl(std::io::stdin(), f);
        }
        if let Some(f) = self.0[1] {
            let _ = rustix::fs::fcntl_setfl(std::io::stdout(), f);
        }
    }
}

/// The client's input, ended early once `stopped` fires: to the proxy
/// loop, a stop reads as the client closing its side. A stop sender that is
/// dropped unsent never ends it.
pub(crate) struct UntilStopped<R> {
    inner: R,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    ended: bool,
}

impl<R> UntilStopped<R> {
    pub(crate) fn new(inner: R, stopped: tokio::sync::oneshot::Receiver<()>) -> UntilStopped<R> {
        UntilStopped {
            inner,
            stopped: Some(stopped),
            ended: false,
        }
    }

    fn ended(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::future::Future as _;
        if let Some(rx) = self.stopped.as_mut() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(rx).poll(cx) {
                self.stopped = None;
                self.ended = r.is_ok();
            }
        }
        self.ended
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for UntilStopped<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.ended(cx) {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for UntilStopped<R> {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.ended(cx) {
            return std::task::Poll::Ready(Ok(&[]));
        }
        std::pin::Pin::new(&mut this.inner).poll_fill_buf(cx)
    }

    fn consume(self: std::pin::Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        if !this.ended {
            std::pin::Pin::new(&mut this.inner).consume(amt);
        }
    }
}

/// The proxy's standard input. A pipe (what MCP clients give a server) is
/// read through the reactor; anything else through tokio's `stdin`, whose
/// every read is handed over from a blocking thread (that hand-over cost
/// each message tens of microseconds here).
pub(crate) fn client_input() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let piped = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(fd)));
    match piped {
        Ok(p) => Box::new(p),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// The proxy's standard output, written through the reactor when it is a
/// pipe (see [`client_input`]).
pub(crate) fn client_output() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let piped = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_file(std::fs::File::from(fd)));
    match piped {
        Ok(p) => Box::new(p),
        Err(_) => Box::new(tokio::io::stdout()),
    }
}
