//! HTTP load on an authority: the request every benchmark asks for, a
//! closed loop of in-process clients, an open loop at a fixed offered rate
//! (no coordinated omission), and `wrk` when it is installed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use writ_artifact::Scope;
use writ_authority::AuthorizeRequest;
use writ_gate::client::Client;

/// The body of a `POST /v1/authorize` for an echo of `request` on `host`
/// (its audience `exec@host`), as the log and soak loads send it.
pub(crate) fn echo_body(request: &serde_json::Value, host: &str) -> serde_json::Value {
    json!({
        "action": "Action::\"exec\"",
        "resource": "Command::\"/usr/bin/echo\"",
        "request": request,
        "environment": {"host": host, "cwd": "/tmp"},
        "audience": format!("exec@{host}"),
    })
}

/// The `exec` request every benchmark's principal asks for.
pub(crate) fn request() -> AuthorizeRequest {
    AuthorizeRequest {
        environment: json!({"host": "bench", "cwd": "/tmp"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        scope: Scope {
            read: vec!["/tmp".into()],
            write: vec![],
            net: false,
        },
        ..AuthorizeRequest::new(
            "Action::\"exec\"",
            "Command::\"/usr/bin/echo\"",
            json!({"argv": ["/usr/bin/echo", "benchmark"]}),
            "exec@bench",
        )
    }
}

pub(crate) struct HttpResult {
    pub(crate) rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

pub(crate) async fn http(url: &str, token: &str, clients: usize, secs: u64) -> Result<HttpResult> {
    let client = Client::new(url, Some(token.into()));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..clients {
        let (c, stop) = (client.clone(), stop.clone());
        hs.push(tokio::spawn(async move {
            let mut h =
                hdrhistogram::Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut errors = 0u64;
            let req = request();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.post("/v1/authorize", &req).await {
                    Ok(r) if r.status == 200 => {
                        let _ = h.record(t.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            Ok::<_, anyhow::Error>((h, errors))
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut errors = 0;
    for h in hs {
        let (hist, e) = h.await??;
        all.add(hist).map_err(|e| anyhow::anyhow!("{e}"))?;
        errors += e;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    anyhow::ensure!(errors == 0, "{errors} HTTP decisions failed");
    Ok(HttpResult {
        rate: all.len() as f64 / elapsed,
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// What the open-loop HTTP measurement saw.
pub(crate) struct OpenLoopResult {
    pub(crate) offered: f64,
    pub(crate) rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// The p99 of the requests due in each second of the run, to tell a
    /// stall in one second from a tail spread over all of them.
    pub(crate) p99_ms_by_second: Vec<f64>,
    /// Requests that were due while their connection still waited for an
    /// earlier answer.
    pub(crate) late: u64,
}

/// An open-loop HTTP load of the authority at `addr`, asking with `token`.
struct OpenLoop {
    addr: std::net::SocketAddr,
    token: String,
    clients: usize,
    rate: u64,
    secs: u64,
}

/// Open-loop HTTP load: `rate` authorize requests per second over `clients`
/// keep-alive connections, for `secs`. Request `k` of connection `i` is due
/// at `start + (k * clients + i) / rate`. When its connection is still
/// waiting for an earlier answer at that instant, the wait counts in its
/// latency, so a stall shows up in the percentiles instead of lowering the
/// rate (no coordinated omission, as wrk2 measures). What does not count is
/// the generator's own lateness: the runtime's timer wakes up to 1 ms after
/// a deadline, and that is not the server's. The load runs on a thread and
/// runtime of its own, with the HTTP exchange written and read as bytes, so
/// it takes little of the cores the server uses.
fn http_open_loop(load: &OpenLoop) -> Result<OpenLoopResult> {
    let OpenLoop {
        addr,
        ref token,
        clients,
        rate,
        secs,
    } = *load;
    anyhow::ensure!(
        clients > 0 && rate > 0,
        "--clients and --rate must be positive"
    );
    let body = serde_json::to_string(&request())?;
    let req: Arc<[u8]> = format!(
        "POST /v1/authorize HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let interval = 1.0 / rate as f64;
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs(secs);
        let mut hs = Vec::new();
        for i in 0..clients {
            let req = req.clone();
            hs.push(tokio::spawn(async move {
                let mut conn = tokio::net::TcpStream::connect(addr).await?;
                conn.set_nodelay(true)?;
                // One histogram per second of the run, by due instant.
                let mut hs = (0..secs.max(1))
                    .map(|_| hdrhistogram::Histogram::<u64>::new(3))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let (mut buf, mut late) = (Vec::with_capacity(4096), 0u64);
                // When the previous answer on this connection arrived.
                let mut answered = start;
                for k in 0u64.. {
                    let due = start
                        + Duration::from_secs_f64(
                            (k * clients as u64 + i as u64) as f64 * interval,
                        );
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    // With an exact timer the request would have left at
                    // `due`, or when the connection was free if that was
                    // later: that wait is the server's and counts.
                    let could_leave = due.max(answered);
                    if answered > due {
                        late += 1;
                    }
                    let sent = tokio::time::Instant::now();
                    tokio::io::AsyncWriteExt::write_all(&mut conn, &req).await?;
                    read_http_ok(&mut conn, &mut buf).await?;
                    answered = tokio::time::Instant::now();
                    let latency = (could_leave - due) + (answered - sent);
                    let second = ((due - start).as_secs() as usize).min(hs.len() - 1);
                    let _ = hs[second].record(latency.as_micros() as u64);
                }
                Ok::<_, anyhow::Error>((hs, late))
            }));
        }
        let new = || hdrhistogram::Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"));
        let mut all = new()?;
        let mut by_second = (0..secs.max(1))
            .map(|_| new())
            .collect::<Result<Vec<_>>>()?;
        let mut late = 0;
        for h in hs {
            let (hists, l) = h.await??;
            for (sum, hist) in by_second.iter_mut().zip(hists) {
                sum.add(hist).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            late += l;
        }
        for h in &by_second {
            all.add(h).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        Ok(OpenLoopResult {
            offered: rate as f64,
            rate: all.len() as f64 / elapsed,
            p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
            p99_ms_by_second: by_second
                .iter()
                .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0)
                .collect(),
            late,
        })
    })
}

/// [`http_open_loop`] of `rate` requests per second over `clients`
/// connections for `secs`, on a thread of its own.
pub(crate) async fn open_loop_at(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    rate: u64,
    secs: u64,
) -> Result<OpenLoopResult> {
    let load = OpenLoop {
        addr,
        token: token.to_owned(),
        clients,
        rate,
        secs,
    };
    tokio::task::spawn_blocking(move || http_open_loop(&load)).await?
}

/// Per-second p99s as `1.9/2.4/...` (milliseconds).
pub(crate) fn by_second(p99s: &[f64]) -> String {
    p99s.iter()
        .map(|p| format!("{p:.1}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Read one HTTP/1.1 response with a `Content-Length` from `conn`; an error
/// unless its status is 200.
async fn read_http_ok(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).context("response head")?;
            anyhow::ensure!(
                head.starts_with("HTTP/1.1 200 "),
                "authorize answered {:?}",
                head.lines().next().unwrap_or("")
            );
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .context("response without Content-Length")?;
            if buf.len() >= head_end + 4 + len {
                anyhow::ensure!(
                    buf.len() == head_end + 4 + len,
                    "more bytes than one response"
                );
                return Ok(());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(conn, &mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The same HTTP load from `wrk` (a C load generator, far lighter than an
/// in-process client), when it is installed: `None` if it is not.
pub(crate) fn http_wrk(
    dir: &std::path::Path,
    url: &str,
    token: &str,
    clients: usize,
    secs: u64,
) -> Result<Option<HttpResult>> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        return Ok(None);
    }
    let body = serde_json::to_string(&request())?;
    let lua = format!(
        r#"wrk.method = "POST"
wrk.body = {body:?}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
done = function(s, latency, requests)
  io.write(string.format("WRIT %d %d %d %f %f %f\n", s.requests, s.errors.status,
    s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout,
    s.duration, latency:percentile(50), latency:percentile(99)))
end
"#
    );
    let script = dir.join("authorize.lua");
    std::fs::write(&script, lua)?;
    let out = std::process::Command::new("wrk")
        .args(["-t1", &format!("-c{clients}"), &format!("-d{secs}s"), "-s"])
        .arg(&script)
        .arg(format!("{url}/v1/authorize"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("WRIT "))
        .context("wrk printed no summary")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [requests, status_errors, io_errors, duration_us, p50_us, p99_us] = f[..] else {
        anyhow::bail!("cannot read wrk summary {line:?}");
    };
    anyhow::ensure!(
        status_errors == 0.0 && io_errors == 0.0,
        "wrk saw {status_errors} non-2xx and {io_errors} I/O errors"
    );
    Ok(Some(HttpResult {
        rate: requests / (duration_us / 1e6),
        p50_ms: p50_us / 1000.0,
        p99_ms: p99_us / 1000.0,
    }))
}
