//! `writ bench readers`: does reading move deciding? The open-loop authorize
//! load of `writ bench authorize` is measured alone and then while clients
//! hammer the heaviest reads (a lineage tree of thousands of nodes, the
//! console's scans, the maturity assessment, 4 MiB log pages), alternating,
//! on one server; the report is the p99 with readers over the p99 without,
//! medians of the runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use writ_authority::{Authority, AuthorizeResponse, Principal};

use writ_gate::client::Client;

use crate::stats::median;
use writ_cli::{DataDir, Exit, Global};

#[derive(clap::Args, Debug)]
pub struct ReadersBench {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Authorize decisions offered per second (open loop, no coordinated
    /// omission), over `--clients` connections.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Clients reading as fast as they can during the second measurement.
    #[arg(long, default_value_t = 8)]
    pub readers: usize,
    /// Decisions logged before measuring (what the scans and pages read).
    #[arg(long, default_value_t = 20_000)]
    pub entries: u64,
    /// Children of the one lineage tree read.
    #[arg(long, default_value_t = 3_000)]
    pub children: u64,
    /// Pairs of measurements (without readers, with readers); medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// The reads: the heaviest routes there are, round robin.
fn reads(root: &str) -> Vec<String> {
    vec![
        format!("/console/api/lineage/{root}"),
        format!("/v1/lineage/{root}"),
        "/console/api/executions".into(),
        "/console/api/assess".into(),
        "/v1/log/entries?start=0".into(),
        "/v1/log/contents?start=0".into(),
        "/console/api/entries".into(),
        "/console/api/revocations".into(),
    ]
}

pub async fn bench_readers(g: &Global, a: ReadersBench) -> Result<Exit> {
    anyhow::ensure!(
        a.runs > 0 && a.seconds > 0,
        "--runs and --seconds must be positive"
    );
    let tmp = std::env::temp_dir().join(format!("writ-bench-readers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let dir = DataDir::new(&tmp);
    let admin = writ_cli::init_quiet(&Global {
        dir: tmp.clone(),
        ..g.clone()
    })
    .await?;
    let running = writ_cli::server::start(&dir, &writ_cli::server::ServeArgs::unlimited()).await?;
    let outcome = measure(g, &a, &running, admin).await;
    let _ = running.shutdown.send(());
    let _ = running.task.await;
    let _ = std::fs::remove_dir_all(&tmp);
    outcome.map(|()| Exit::Ok)
}

/// Log `n` decisions (one in fifty with a 200 KB context), and a lineage
/// tree of `children` under one running root; the root's jti.
async fn seed(authority: &Arc<Authority>, n: u64, children: u64) -> Result<String> {
    let who = Principal::new("User::\"admin\"", true);
    let mut root = crate::load::request();
    root.lifetime_secs = Some(3600);
    root.start = true;
    let AuthorizeResponse::Allow { jti: root_jti, .. } = authority.authorize(&who, root).await?
    else {
        anyhow::bail!("the root writ was denied");
    };
    let next = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for _ in 0..64 {
        let (a, who, next, root_jti) = (
            authority.clone(),
            who.clone(),
            next.clone(),
            root_jti.clone(),
        );
        hs.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let mut req = crate::load::request();
                if k < children {
                    req.parent = Some(root_jti.clone());
                } else if k % 50 == 0 {
                    req.context
                        .insert("blob".into(), json!("x".repeat(200 * 1024)));
                }
                a.authorize(&who, req).await?;
            }
        }));
    }
    for h in hs {
        h.await??;
    }
    Ok(root_jti)
}

/// What the readers did while they ran.
#[derive(Default)]
struct ReadTally {
    ok: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// `readers` clients reading `paths` round robin until `stop`, on a thread
/// and runtime of their own.
fn start_readers(
    url: String,
    token: String,
    readers: usize,
    paths: Vec<String>,
    stop: Arc<AtomicBool>,
    tally: Arc<ReadTally>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let mut hs = Vec::new();
            // Bytes read and dropped: the readers' own cost stays small, so
            // what moves the authorize latency is the server's.
            let http = reqwest::Client::new();
            for i in 0..readers {
                let (http, url, token) = (http.clone(), url.clone(), token.clone());
                let (paths, stop, tally) = (paths.clone(), stop.clone(), tally.clone());
                hs.push(tokio::spawn(async move {
                    let mut k = i;
                    while !stop.load(Ordering::Relaxed) {
                        let path = &paths[k % paths.len()];
                        k += 1;
                        let sent = http
                            .get(format!("{url}{path}"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                        let status = sent.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                        let body = match sent {
                            Ok(r) => r.bytes().await.ok(),
                            Err(_) => None,
                        };
                        match (status, body) {
                            (200, Some(b)) => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                                tally.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                            }
                            (503, _) => {
                                tally.busy.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            _ => {
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
            for h in hs {
                let _ = h.await;
            }
        });
    })
}

async fn measure(
    g: &Global,
    a: &ReadersBench,
    running: &writ_cli::server::Running,
    admin: String,
) -> Result<()> {
    let url = running.url();
    let token = Client::new(&url, Some(admin.clone()))
        .post("/v1/principals", &json!({"uid": "Agent::\"bench\""}))
        .await?
        .body["token"]
        .as_str()
        .context("no bench token")?
        .to_owned();
    eprintln!(
        "writ bench readers: seeding {} decisions ({} in one lineage tree)",
        a.entries, a.children
    );
    let root = seed(&running.authority, a.entries, a.children).await?;
    let (mut alone, mut with, mut reads_per_sec, mut busy_per_sec) =
        (vec![], vec![], vec![], vec![]);
    let mut bytes_per_sec = vec![];
    for run in 0..a.runs {
        let o =
            crate::load::open_loop_at(running.addr, &token, a.clients, a.rate, a.seconds).await?;
        alone.push(o.p99_ms);
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(ReadTally::default());
        let readers = start_readers(
            url.clone(),
            admin.clone(),
            a.readers,
            reads(&root),
            stop.clone(),
            tally.clone(),
        );
        // Let the readers get going before the load starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = crate::load::open_loop_at(running.addr, &token, a.clients, a.rate, a.seconds).await;
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || readers.join()).await;
        let r = r?;
        with.push(r.p99_ms);
        let secs = a.seconds as f64 + 0.5;
        let ok = tally.ok.load(Ordering::Relaxed) as f64 / secs;
        let busy = tally.busy.load(Ordering::Relaxed) as f64 / secs;
        let mib = tally.bytes.load(Ordering::Relaxed) as f64 / secs / 1_048_576.0;
        reads_per_sec.push(ok);
        busy_per_sec.push(busy);
        bytes_per_sec.push(mib);
        anyhow::ensure!(
            tally.failed.load(Ordering::Relaxed) == 0,
            "{} reads failed",
            tally.failed.load(Ordering::Relaxed)
        );
        if !g.json {
            println!(
                "run {}: authorize p99 {:.2} ms alone, {:.2} ms with {} readers ({ok:.1} reads/s, {mib:.1} MiB/s, {busy:.1}/s told busy); p50 {:.2} ms / {:.2} ms",
                run + 1,
                o.p99_ms,
                r.p99_ms,
                a.readers,
                o.p50_ms,
                r.p50_ms
            );
        }
    }
    let (p_alone, p_with) = (median(alone), median(with));
    let ratio = p_with / p_alone;
    if g.json {
        writ_cli::print_json(&json!({
            "offered_per_sec": a.rate,
            "readers": a.readers,
            "entries": running.authority.log_size(),
            "p99_ms_alone": p_alone,
            "p99_ms_with_readers": p_with,
            "ratio": ratio,
            "reads_per_sec": median(reads_per_sec),
            "read_mib_per_sec": median(bytes_per_sec),
            "busy_per_sec": median(busy_per_sec),
        }))?;
    } else {
        println!(
            "authorize p99 with {} readers / alone: {p_with:.2} / {p_alone:.2} ms = {ratio:.2}x (median of {} runs; target <= 1.5x)",
            a.readers, a.runs
        );
    }
    Ok(())
}
