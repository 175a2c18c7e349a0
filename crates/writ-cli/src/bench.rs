//! `writ bench authorize`: the bare ceiling, the governed in-process decision,
//! HTTP decisions on loopback, and verification against a bare Ed25519 verify,
//! all in one run so the ratios compare like with like.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use writ_artifact::{
    Claims, Clock, EnvironmentBinding, KeyRing, Lineage, LogPointer, NoStatus, OsEntropy, Scope,
    SystemClock, VerifyOptions, WritBody, WritKey,
};
use writ_authority::{Authority, AuthorizeRequest, Principal};
use writ_policy::{Bundle, DecisionInput};

use crate::client::Client;
use crate::{DataDir, Exit, Global};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Ceiling vs governed in-process decisions vs HTTP decisions; verification cost.
    ///
    /// Runs its own server on a fresh data dir under the system's temporary
    /// directory (removed at the end), not on `--dir`.
    Authorize(AuthorizeBench),
    /// The audit log at ten million entries: durable append, inclusion
    /// proofs, full verification, `writ serve` RSS, and the Agent Governance
    /// Toolkit's AuditLog on the same entries.
    Log(crate::benchlog::LogBench),
    /// What `writ exec` adds to running a program (against a real server on
    /// loopback), and the time from `writ revoke` to a governed process's
    /// death.
    Exec(crate::benchexec::ExecBench),
    /// A steady offered rate (authorize + verify) for a long time: errors,
    /// latency percentiles and `writ serve` RSS over the run.
    Soak(crate::benchsoak::SoakBench),
    /// Authorize latency (open loop) alone and while clients hammer the
    /// heaviest reads (lineage trees, console scans, the assessment, 4 MiB
    /// log pages), alternating on one server: does reading move deciding?
    Readers(crate::benchreaders::ReadersBench),
}

#[derive(clap::Args, Debug)]
pub struct AuthorizeBench {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent HTTP clients (connections).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Concurrent in-process callers of the governed decision, a
    /// comma-separated list. The governed rate is measured at each count and
    /// divided by the ceiling of the same run; the count with the best
    /// median ratio is the one reported as the governed rate (the ceiling is
    /// itself a rate with every core busy). With too few callers the
    /// pipeline idles while all of them wait for the same commit.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    pub tasks: Vec<usize>,
    /// Allow decisions per second offered in the open-loop HTTP measurement,
    /// over `--clients` keep-alive connections. Each request has an instant
    /// it is due; if its connection is still waiting for an earlier answer
    /// then, that wait counts in its latency (no coordinated omission).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Run only the governed in-process measurement (for profiling); one
    /// line per caller count and run (with --json, a JSON object per line).
    #[arg(long, conflicts_with_all = ["open_loop_only", "parts"])]
    pub governed_only: bool,
    /// Run only the open-loop HTTP measurement (`--rate` over `--clients`
    /// connections), for comparing builds; one line per run (with --json, a
    /// JSON object per line).
    #[arg(long, conflicts_with = "parts")]
    pub open_loop_only: bool,
    /// Print the one-thread cost of each part of a governed decision (an
    /// `exec` request with no parent, not started), and the mean time of one
    /// governed decision at a time; nothing else.
    #[arg(long)]
    pub parts: bool,
}

pub(crate) fn request() -> AuthorizeRequest {
    AuthorizeRequest {
        action: "Action::\"exec\"".into(),
        resource: "Command::\"/usr/bin/echo\"".into(),
        context: Default::default(),
        request: json!({"argv": ["/usr/bin/echo", "benchmark"]}),
        environment: json!({"host": "bench", "cwd": "/tmp"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        scope: Scope {
            read: vec!["/tmp".into()],
            write: vec![],
            net: false,
        },
        audience: "exec@bench".into(),
        parent: None,
        lifetime_secs: None,
        start: false,
        credential: false,
        delegates: Vec::new(),
        cnf: None,
    }
}

fn claims_for(req: &AuthorizeRequest, policy: &str, now: u64, jti: &str) -> Result<Claims> {
    Ok(Claims {
        iss: "writ".into(),
        sub: "Agent::\"bench\"".into(),
        aud: req.audience.clone(),
        cnf: None,
        iat: now,
        nbf: now,
        exp: now + 60,
        jti: jti.into(),
        writ: WritBody {
            action: req.action.clone(),
            resource: req.resource.clone(),
            request: writ_artifact::canonical::digest_json(&req.request)
                .map_err(anyhow::Error::msg)?,
            environment: EnvironmentBinding::bind(req.environment.clone())
                .map_err(anyhow::Error::msg)?,
            scope: req.scope.clone(),
            policy: policy.into(),
            lineage: Lineage {
                parent: None,
                root: jti.into(),
                depth: 0,
            },
            log: LogPointer {
                origin: "bench".into(),
                index: 0,
            },
        },
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Cedar decision + Ed25519 signature of the writ, on every core, no log.
fn ceiling(bundle: &Arc<Bundle>, key: &Arc<WritKey>, secs: u64) -> Result<f64> {
    let req = request();
    let ctx = json!({
        "request": req.request, "environment": req.environment, "audience": req.audience,
        "scope": {"read": req.scope.read, "write": req.scope.write, "net": false},
        "lineage": {"depth": 0, "root_principal": "Agent::\"bench\"", "parent_action": ""},
    });
    let claims = claims_for(
        &req,
        bundle.hash(),
        SystemClock.now_unix_secs(),
        "0123456789abcdef0123456789abcdef",
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads())
        .map(|_| {
            let (bundle, key, stop, count, ctx, claims, req) = (
                bundle.clone(),
                key.clone(),
                stop.clone(),
                count.clone(),
                ctx.clone(),
                claims.clone(),
                req.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let d = bundle.decide(DecisionInput {
                        principal: "Agent::\"bench\"",
                        action: &req.action,
                        resource: &req.resource,
                        context: &ctx,
                    });
                    if d.map(|d| d.allow).unwrap_or(false) {
                        let _ = std::hint::black_box(writ_artifact::sign(&key, &claims));
                    }
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    Ok(count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64())
}

/// One thread: what each part of a governed decision costs.
async fn parts(authority: &Arc<Authority>, bundle: &Arc<Bundle>, key: &Arc<WritKey>) -> Result<()> {
    use writ_log::{DecisionEntry, Entry, Outcome};
    let req = request();
    let ctx = json!({
        "request": req.request, "environment": req.environment, "audience": req.audience,
        "scope": {"read": req.scope.read, "write": req.scope.write, "net": false},
        "lineage": {"depth": 0, "root_principal": "Agent::\"bench\"", "parent_action": ""},
    });
    let claims = claims_for(
        &req,
        bundle.hash(),
        SystemClock.now_unix_secs(),
        "0123456789abcdef0123456789abcdef",
    )?;
    let entry = Entry::Decision(Box::new(DecisionEntry {
        time_ms: 1_700_000_000_000,
        principal: "Agent::\"bench\"".into(),
        action: req.action.clone(),
        resource: req.resource.clone(),
        context: ctx.clone(),
        request: claims.writ.request.clone(),
        environment: claims.writ.environment.digest.clone(),
        audience: req.audience.clone(),
        scope: req.scope.clone(),
        policy: bundle.hash().into(),
        decision: Outcome::Allow,
        delegates: Vec::new(),
        reason: None,
        message: "permitted by exec-harmless-commands".into(),
        jti: Some("0123456789abcdef0123456789abcdef".into()),
        parent: None,
        exp: Some(1_700_000_060),
        content: None,
    }));
    let leaf = entry.to_leaf().map_err(anyhow::Error::msg)?;
    let decide = ns_per_op(1.0, || {
        let _ = std::hint::black_box(bundle.decide(DecisionInput {
            principal: "Agent::\"bench\"",
            action: &req.action,
            resource: &req.resource,
            context: &ctx,
        }));
    });
    let sign = ns_per_op(1.0, || {
        let _ = std::hint::black_box(writ_artifact::sign(key, &claims));
    });
    let to_leaf = ns_per_op(1.0, || {
        let _ = std::hint::black_box(entry.to_leaf());
    });
    let hash = ns_per_op(1.0, || {
        let _ = std::hint::black_box(writ_log::leaf_hash(&leaf));
    });
    let digests = ns_per_op(1.0, || {
        let _ = std::hint::black_box(writ_artifact::canonical::digest_value(&req.request));
        let _ = std::hint::black_box(EnvironmentBinding::bind(req.environment.clone()));
    });
    let uids = ns_per_op(1.0, || {
        for u in [
            "Agent::\"bench\"",
            req.action.as_str(),
            req.resource.as_str(),
        ] {
            let _ =
                std::hint::black_box(<cedar_policy::EntityUid as std::str::FromStr>::from_str(u));
        }
    });
    let who = Principal::new("Agent::\"bench\"", false);
    let t0 = Instant::now();
    let mut n = 0u32;
    while t0.elapsed() < Duration::from_secs(2) {
        let _ = authority.authorize(&who, request()).await;
        n += 1;
    }
    let one = t0.elapsed().as_nanos() as f64 / f64::from(n);
    let ns = |x: f64| format!("{:.1} us", x / 1000.0);
    println!("decide {} (of which parsing three entity UIDs {})  sign {}  to_leaf {} ({} bytes)  leaf_hash {}  digests {}  authorize one at a time {}",
        ns(decide), ns(uids), ns(sign), ns(to_leaf), leaf.len(), ns(hash), ns(digests), ns(one));
    Ok(())
}

/// The governed decision in-process: decide, durable log with group commit, sign.
async fn governed(authority: &Arc<Authority>, tasks: usize, secs: u64) -> Result<f64> {
    let who = Principal::new("Agent::\"bench\"", false);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..tasks {
        let (a, who, stop, count, failures) = (
            authority.clone(),
            who.clone(),
            stop.clone(),
            count.clone(),
            failures.clone(),
        );
        hs.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match a.authorize(&who, request()).await {
                    Ok(r) if r.is_allow() => count.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        let _ = h.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        failures.load(Ordering::Relaxed) == 0,
        "governed decisions failed"
    );
    Ok(count.load(Ordering::Relaxed) as f64 / elapsed)
}

struct HttpResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn http(url: &str, token: &str, clients: usize, secs: u64) -> Result<HttpResult> {
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
    offered: f64,
    rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// The p99 of the requests due in each second of the run, to tell a
    /// stall in one second from a tail spread over all of them.
    p99_ms_by_second: Vec<f64>,
    /// Requests that were due while their connection still waited for an
    /// earlier answer.
    late: u64,
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
fn http_open_loop(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    rate: u64,
    secs: u64,
) -> Result<OpenLoopResult> {
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

/// [`http_open_loop`] on a thread of its own.
pub(crate) async fn open_loop_at(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    rate: u64,
    secs: u64,
) -> Result<OpenLoopResult> {
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || http_open_loop(addr, &token, clients, rate, secs)).await?
}

/// Per-second p99s as `1.9/2.4/...` (milliseconds).
fn by_second(p99s: &[f64]) -> String {
    p99s.iter()
        .map(|p| format!("{p:.1}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// [`http_open_loop`] at `a`'s rate, connections and seconds, on a thread
/// of its own.
async fn open_loop(
    running: &crate::server::Running,
    token: &str,
    a: &AuthorizeBench,
) -> Result<OpenLoopResult> {
    let (addr, token, clients, rate, secs) =
        (running.addr, token.to_owned(), a.clients, a.rate, a.seconds);
    tokio::task::spawn_blocking(move || http_open_loop(addr, &token, clients, rate, secs)).await?
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
fn http_wrk(
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

/// Nanoseconds per operation of `f`, run for about `secs` on one thread.
fn ns_per_op(secs: f64, mut f: impl FnMut()) -> f64 {
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    t0.elapsed().as_nanos() as f64 / n as f64
}

pub async fn bench(g: &Global, c: BenchCmd) -> Result<Exit> {
    let a = match c {
        BenchCmd::Authorize(a) => a,
        BenchCmd::Log(l) => return crate::benchlog::bench(g, l).await,
        BenchCmd::Exec(e) => return crate::benchexec::bench_exec(g, e).await,
        BenchCmd::Soak(s) => return crate::benchsoak::bench_soak(g, s).await,
        BenchCmd::Readers(r) => return crate::benchreaders::bench_readers(g, r).await,
    };
    anyhow::ensure!(
        !a.tasks.is_empty() && a.tasks.iter().all(|&t| t > 0),
        "--tasks needs one or more positive counts"
    );
    anyhow::ensure!(
        a.clients > 0 && a.rate > 0,
        "--clients and --rate must be positive"
    );
    let tmp = std::env::temp_dir().join(format!("writ-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let dir = DataDir::new(&tmp);
    let started = async {
        let admin = crate::commands::init::init_quiet(&Global {
            dir: tmp.clone(),
            ..g.clone()
        })
        .await?;
        let running = crate::server::start(&dir, &crate::server::ServeArgs::unlimited()).await?;
        Ok::<_, anyhow::Error>((admin, running))
    }
    .await;
    let (admin, running) = match started {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Whatever happens in the measurements, the server stops and its data
    // dir (keys, log) goes.
    let outcome = measure(g, &a, &running, admin, &tmp).await;
    stop(running, &tmp).await;
    outcome.map(|()| Exit::Ok)
}

/// Every measurement of `writ bench authorize`, against `running`.
async fn measure(
    g: &Global,
    a: &AuthorizeBench,
    running: &crate::server::Running,
    admin: String,
    tmp: &std::path::Path,
) -> Result<()> {
    let url = running.url();
    let reply = Client::new(&url, Some(admin))
        .post("/v1/principals", &json!({"uid": "Agent::\"bench\""}))
        .await?;
    let token = reply.body["token"]
        .as_str()
        .context("no bench token")?
        .to_owned();
    let authority = running.authority.clone();
    let bundle = authority.active_bundle();
    let key = Arc::new(WritKey::generate(&OsEntropy)?);
    let secs = a.seconds;
    eprintln!(
        "writ bench authorize: {} cores, {} s per measurement, median of {} runs",
        threads(),
        secs,
        a.runs
    );

    if a.parts {
        return parts(&authority, &bundle, &key).await;
    }
    if a.governed_only {
        return governed_runs(g, &authority, &a.tasks, secs, a.runs).await;
    }
    if a.open_loop_only {
        for _ in 0..a.runs {
            let o = open_loop(running, &token, a).await?;
            if g.json {
                writ_gate::print_json_line(&json!({
                    "offered_per_sec": a.rate,
                    "allow_per_sec": o.rate.round(),
                    "p50_ms": o.p50_ms,
                    "p99_ms": o.p99_ms,
                    "p99_ms_by_second": o.p99_ms_by_second,
                    "sent_late": o.late,
                    "log_entries": authority.log_size(),
                }))?;
                continue;
            }
            println!(
                "open loop {:.0}/s offered {:.0}/s: p50 {:.2} ms, p99 {:.2} ms (by second {}; {} sent late; log {} entries)",
                o.rate,
                o.offered,
                o.p50_ms,
                o.p99_ms,
                by_second(&o.p99_ms_by_second),
                o.late,
                authority.log_size()
            );
        }
        return Ok(());
    }
    let (mut ceil, mut https, mut wrks, mut opens) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut gov: Vec<Vec<f64>> = vec![Vec::new(); a.tasks.len()];
    for run in 1..=a.runs {
        let (b, k) = (bundle.clone(), key.clone());
        let c = tokio::task::spawn_blocking(move || ceiling(&b, &k, secs)).await??;
        let mut gvs = Vec::new();
        for (i, &t) in a.tasks.iter().enumerate() {
            let gv = governed(&authority, t, secs).await?;
            gov[i].push(gv);
            gvs.push(format!("{gv:.0}/s at {t} callers"));
        }
        let h = http(&url, &token, a.clients, secs).await?;
        let w = {
            let (tmp, url, token, clients) =
                (tmp.to_owned(), url.clone(), token.clone(), a.clients);
            tokio::task::spawn_blocking(move || http_wrk(&tmp, &url, &token, clients, secs))
                .await??
        };
        let o = open_loop(running, &token, a).await?;
        eprintln!(
            "  run {run}: ceiling {c:.0}/s, governed {}, http (in-process client) {:.0}/s (p50 {:.2} ms, p99 {:.2} ms){}, http open loop {:.0}/s offered {:.0}/s (p50 {:.2} ms, p99 {:.2} ms, by second {}, {} sent late)",
            gvs.join(", "),
            h.rate,
            h.p50_ms,
            h.p99_ms,
            w.as_ref().map_or(String::new(), |w| format!(", http (wrk) {:.0}/s (p50 {:.2} ms, p99 {:.2} ms)", w.rate, w.p50_ms, w.p99_ms)),
            o.rate,
            o.offered,
            o.p50_ms,
            o.p99_ms,
            by_second(&o.p99_ms_by_second),
            o.late,
        );
        if let Some(w) = w {
            wrks.push(w);
        }
        ceil.push(c);
        https.push(h);
        opens.push(o);
    }

    // Verification: full offline writ verification vs a bare Ed25519 verify of
    // the same signing input.
    let req = request();
    let now = SystemClock.now_unix_secs();
    let claims = claims_for(&req, bundle.hash(), now, "0123456789abcdef0123456789abcdef")?;
    let token_str = writ_artifact::sign(&key, &claims).map_err(anyhow::Error::msg)?;
    let mut ring = KeyRing::new();
    ring.insert(key.verifying_key());
    let opts = VerifyOptions {
        now_unix_secs: now,
        skew_secs: 5,
        audience: Some(req.audience.clone()),
        request_digest: Some(claims.writ.request.clone()),
        environment_digest: Some(claims.writ.environment.digest.clone()),
        accepted_policies: Some([bundle.hash().to_owned()].into()),
        check_spent: false,
        holder: Default::default(),
    };
    anyhow::ensure!(
        writ_artifact::verify(&token_str, &ring, &opts, &NoStatus).is_ok(),
        "bench writ does not verify"
    );
    let (input, sig) = token_str.rsplit_once('.').context("bench writ")?;
    let sig = writ_artifact::keys::Signature::from_bytes(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("signature length"))?,
    );
    let vk = key.verifying_key();
    let (mut bare, mut full) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        bare.push(ns_per_op(1.0, || {
            let _ = std::hint::black_box(
                vk.verify_strict(std::hint::black_box(input.as_bytes()), &sig),
            );
        }));
        full.push(ns_per_op(1.0, || {
            let _ = std::hint::black_box(writ_artifact::verify(
                std::hint::black_box(&token_str),
                &ring,
                &opts,
                &NoStatus,
            ));
        }));
    }

    // Where the ceiling goes: one Cedar decision and one signature, one thread.
    let ctx = json!({
        "request": req.request, "environment": req.environment, "audience": req.audience,
        "scope": {"read": req.scope.read, "write": req.scope.write, "net": false},
        "lineage": {"depth": 0, "root_principal": "Agent::\"bench\"", "parent_action": ""},
    });
    let decide_ns = ns_per_op(1.0, || {
        let _ = std::hint::black_box(bundle.decide(DecisionInput {
            principal: "Agent::\"bench\"",
            action: &req.action,
            resource: &req.resource,
            context: &ctx,
        }));
    });
    let sign_ns = ns_per_op(1.0, || {
        let _ = std::hint::black_box(writ_artifact::sign(&key, &claims));
    });

    // Each ratio is taken within a run (the machine's speed drifts between
    // runs), then the median over the runs.
    let gov_ratios: Vec<f64> = gov
        .iter()
        .map(|runs| median(runs.iter().zip(&ceil).map(|(g, c)| g / c).collect()))
        .collect();
    let gov_medians: Vec<f64> = gov.into_iter().map(median).collect();
    let c = median(ceil);
    let best = (0..a.tasks.len())
        .max_by(|&x, &y| gov_ratios[x].total_cmp(&gov_ratios[y]))
        .unwrap_or(0);
    let (best_at, gv, gv_ratio) = (a.tasks[best], gov_medians[best], gov_ratios[best]);
    let hr = median(https.iter().map(|h| h.rate).collect());
    let p50 = median(https.iter().map(|h| h.p50_ms).collect());
    let p99 = median(https.iter().map(|h| h.p99_ms).collect());
    let open = (
        median(opens.iter().map(|o| o.rate).collect()),
        median(opens.iter().map(|o| o.p50_ms).collect()),
        median(opens.iter().map(|o| o.p99_ms).collect()),
        median(opens.iter().map(|o| o.late as f64).collect()),
    );
    let (vb, vf) = (median(bare), median(full));
    let wrk_json = (!wrks.is_empty()).then(|| {
        json!({
            "allow_per_sec": median(wrks.iter().map(|h| h.rate).collect()).round(),
            "p50_ms": median(wrks.iter().map(|h| h.p50_ms).collect()),
            "p99_ms": median(wrks.iter().map(|h| h.p99_ms).collect()),
        })
    });
    let ratio = |x: f64| (x * 1000.0).round() / 1000.0;
    let report = json!({
        "cores": threads(),
        "seconds_per_measurement": secs,
        "runs": a.runs,
        "ceiling_per_sec": c.round(),
        "governed_per_sec": gv.round(),
        "governed_callers": best_at,
        "governed_over_ceiling": ratio(gv_ratio),
        "governed_by_callers": a.tasks.iter().zip(gov_medians.iter().zip(&gov_ratios)).map(|(t, (g, r))| json!({
            "callers": t, "per_sec": g.round(), "over_ceiling": ratio(*r),
        })).collect::<Vec<_>>(),
        "http_clients": a.clients,
        "http_wrk": wrk_json,
        "http_allow_per_sec": hr.round(),
        "http_p50_ms": p50,
        "http_p99_ms": p99,
        "http_open_loop": {
            "offered_per_sec": a.rate,
            "allow_per_sec": open.0.round(),
            "p50_ms": open.1,
            "p99_ms": open.2,
            "sent_late": open.3,
            "p99_ms_by_second_per_run": opens.iter().map(|o| &o.p99_ms_by_second).collect::<Vec<_>>(),
        },
        "verify_bare_ed25519_us": (vb / 10.0).round() / 100.0,
        "verify_writ_us": (vf / 10.0).round() / 100.0,
        "verify_over_bare": (vf / vb * 1000.0).round() / 1000.0,
        "cedar_decide_us": (decide_ns / 10.0).round() / 100.0,
        "sign_writ_us": (sign_ns / 10.0).round() / 100.0,
        "log_entries": authority.log_size(),
        "targets": {"governed_over_ceiling_min": 0.6, "http_allow_per_sec_min": 10000, "http_p99_ms_max": 5.0, "verify_over_bare_max": 1.3},
    });
    if g.json {
        crate::output::print_json(&report)?;
    } else {
        println!(
            "ceiling (Cedar + Ed25519 sign, {} threads)   {c:>10.0} /s",
            threads()
        );
        for (t, (g, r)) in a.tasks.iter().zip(gov_medians.iter().zip(&gov_ratios)) {
            println!("governed in-process, {t:>4} callers          {g:>10.0} /s   ratio {r:.3}");
        }
        println!(
            "governed rate (best of the above, {best_at} callers) {gv:>7.0} /s   ratio {gv_ratio:.3} (target >= 0.6; ratios are per run, then the median)"
        );
        if let Some(w) = &wrk_json {
            println!(
                "HTTP allow, wrk, {} connections, closed loop {:>10.0} /s   p50 {:.2} ms, p99 {:.2} ms (target >= 10000/s)",
                a.clients, w["allow_per_sec"].as_f64().unwrap_or(0.0), w["p50_ms"].as_f64().unwrap_or(0.0), w["p99_ms"].as_f64().unwrap_or(0.0)
            );
        }
        println!("HTTP allow, {} in-process clients           {hr:>10.0} /s   p50 {p50:.2} ms, p99 {p99:.2} ms (the client shares the server's cores)", a.clients);
        println!(
            "HTTP allow, {:.0}/s offered, {} connections {:>9.0} /s   p50 {:.2} ms, p99 {:.2} ms (target p99 <= 5 ms at >= 10000/s; {:.0} sent late)",
            a.rate as f64, a.clients, open.0, open.1, open.2, open.3
        );
        println!(
            "one thread: Cedar decision {:.2} us, writ signature {:.2} us",
            decide_ns / 1000.0,
            sign_ns / 1000.0
        );
        println!(
            "verify: bare Ed25519 {:.2} us, writ {:.2} us      ratio {:.3} (target <= 1.3)",
            vb / 1000.0,
            vf / 1000.0,
            vf / vb
        );
    }
    Ok(())
}

/// `--governed-only`: the governed measurement alone, each run printed.
async fn governed_runs(
    g: &Global,
    authority: &Arc<Authority>,
    tasks: &[usize],
    secs: u64,
    runs: usize,
) -> Result<()> {
    for _ in 0..runs {
        for &t in tasks {
            let gv = governed(authority, t, secs).await?;
            if g.json {
                writ_gate::print_json_line(&json!({
                    "callers": t,
                    "per_sec": gv.round(),
                    "log_entries": authority.log_size(),
                }))?;
                continue;
            }
            println!(
                "governed {gv:.0}/s at {t} callers (log {} entries)",
                authority.log_size()
            );
        }
    }
    Ok(())
}

/// Stop the bench's server and remove its data dir (keys, log).
async fn stop(running: crate::server::Running, tmp: &std::path::Path) {
    let _ = running.shutdown.send(());
    let _ = running.task.await;
    let _ = std::fs::remove_dir_all(tmp);
}
