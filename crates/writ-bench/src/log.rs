//! `writ bench log`: the audit log at scale, and the Agent Governance
//! Toolkit's audit log measured in the same run.
//!
//! 1. durable append: realistic decision entries, one per transaction, from a
//!    window of concurrent submitters, through the store's group commit (WAL,
//!    `synchronous=FULL`), until the log holds `--entries`;
//! 2. inclusion proofs at that size: random entries, each proof checked;
//! 3. full verification: `writ log verify` of the data dir (every leaf hash,
//!    every stored subtree hash, every checkpoint);
//! 4. `writ serve` on that data dir, as a child process, under load: its
//!    peak RSS;
//! 5. the peer: the toolkit's `AuditLog` and writ each append, prove and
//!    verify `--peer-entries` entries (the toolkit keeps its log in memory, so
//!    it cannot hold ten million).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use writ_artifact::Scope;
use writ_cli::{DataDir, Exit, Global};
use writ_gate::client::Client;
use writ_log::{DecisionEntry, Entry, Outcome};
use writ_store::prelude::*;
use writ_store::{Op, SqliteStore, Store, Tx};

use crate::child::ServeChild;

#[derive(clap::Args, Debug)]
pub struct LogBench {
    /// Entries the large log holds (the proof, verification and RSS figures
    /// are taken at this size).
    #[arg(long, default_value_t = 10_000_000)]
    pub entries: u64,
    /// Entries both writ and the peer append, prove and verify.
    #[arg(long, default_value_t = 1_000_000)]
    pub peer_entries: u64,
    /// Inclusion proofs measured (random entries).
    #[arg(long, default_value_t = 20_000)]
    pub proofs: u64,
    /// Transactions in flight while appending (the group commit takes what
    /// is waiting).
    #[arg(long, default_value_t = 4096)]
    pub window: usize,
    /// Python with `agent-governance-toolkit-core` installed, for the peer
    /// (`scripts/bench-log` makes one); without it the peer is skipped.
    #[arg(long, env = "WRIT_BENCH_AGT_PYTHON")]
    pub agt_python: Option<PathBuf>,
    /// Keep (and reuse) the large data dir here instead of a temporary one:
    /// a later run with the same path skips appending what is already there.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// One decision entry shaped like the ones the authority logs.
fn entry(i: u64, time_ms: u64) -> Result<Vec<u8>> {
    let argv = json!(["/usr/bin/echo", "benchmark", i.to_string()]);
    let scope = Scope {
        net: false,
        read: vec!["/srv/data".into()],
        write: vec!["/tmp/out".into()],
    };
    let d = DecisionEntry {
        time_ms,
        principal: "Agent::\"bench\"".into(),
        action: "Action::\"exec\"".into(),
        resource: "Command::\"/usr/bin/echo\"".into(),
        context: json!({
            "request": {"argv": argv},
            "environment": {"host": "bench", "cwd": "/tmp"},
            "audience": "exec@bench",
            "scope": {"net": false, "read": ["/srv/data"], "write": ["/tmp/out"]},
            "lineage": {"depth": 0, "root_principal": "Agent::\"bench\"", "parent_action": ""},
        }),
        request: format!("sha256:{:064x}", i),
        environment: format!("sha256:{:064x}", i ^ 0xffff),
        audience: "exec@bench".into(),
        scope,
        policy: format!("sha256:{}", "ab".repeat(32)),
        decision: Outcome::Allow,
        delegates: Vec::new(),
        reason: None,
        message: "permitted by policy0".into(),
        jti: Some(format!("{:032x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15)),
        parent: None,
        exp: Some(time_ms / 1000 + 300),
        probe: false,
        content: None,
    };
    Entry::Decision(Box::new(d))
        .to_leaf()
        .map_err(anyhow::Error::msg)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Append until the log holds `target` entries; entries per second.
fn append_to(store: &SqliteStore, target: u64, window: usize, label: &str) -> Result<(u64, f64)> {
    let start = store.log_size()?;
    if start >= target {
        return Ok((0, 0.0));
    }
    let n = target - start;
    let step = (n / 20).max(1);
    let t0 = Instant::now();
    let mut inflight = VecDeque::with_capacity(window);
    let mut acked = 0u64;
    let time_ms = now_ms();
    for i in start..target {
        if inflight.len() >= window {
            if let Some(t) = inflight.pop_front() {
                let t: writ_store::Ticket = t;
                t.wait().context("a durable append failed")?;
            }
            acked += 1;
            if acked.is_multiple_of(step) {
                eprintln!(
                    "  {label}: {} of {n} appended ({:.0}/s)",
                    acked,
                    acked as f64 / t0.elapsed().as_secs_f64()
                );
            }
        }
        inflight.push_back(store.submit(Tx::new(vec![Op::Append {
            leaf: entry(i, time_ms + i / 1000)?,
        }])));
    }
    for t in inflight {
        t.wait().context("a durable append failed")?;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        store.log_size()? == target,
        "the log does not hold {target} entries"
    );
    Ok((n, rate))
}

struct ProofFigures {
    median_us: f64,
    p99_us: f64,
    count: u64,
}

/// `count` inclusion proofs of random entries at the current size, each
/// checked against the root (outside the timing).
fn proofs(store: &SqliteStore, count: u64) -> Result<ProofFigures> {
    let size = store.log_size()?;
    let root = store.tree_root(size)?;
    let mut h = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ size;
    for _ in 0..count {
        // xorshift: reproducible and cheap
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let index = state % size;
        let t = Instant::now();
        let proof = store.inclusion_proof(index, size)?;
        h.record(t.elapsed().as_nanos() as u64)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let leaf = store.entries(index, index + 1)?;
        let leaf = leaf.first().context("proved entry is not stored")?;
        anyhow::ensure!(
            writ_log::merkle::verify_inclusion(
                index,
                size,
                &writ_log::leaf_hash(&leaf.leaf),
                &proof,
                &root
            ),
            "the proof of entry {index} does not verify"
        );
    }
    Ok(ProofFigures {
        median_us: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: h.value_at_quantile(0.99) as f64 / 1000.0,
        count,
    })
}

/// `writ log verify` of the data dir, in process: entries per second.
fn verify(dir: &DataDir, store: &Arc<SqliteStore>) -> Result<(u64, f64)> {
    let opts = writ_audit::Options {
        log_key: dir.log_verifier()?,
        other_log_keys: vec![],
        witnesses: vec![],
        replay: None,
        progress: None,
        accept_withheld: false,
    };
    let t0 = Instant::now();
    let report = writ_cli::verify_store(store.clone() as Arc<dyn Store>, &opts)?;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.ok(),
        "verification found problems: {:?}",
        report.problems
    );
    Ok((report.entries, report.entries as f64 / secs))
}

fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

struct ServeFigures {
    rss_mib: f64,
    peak_rss_mib: f64,
    startup_s: f64,
    decisions: u64,
    proofs: u64,
}

/// Run `writ serve` on `dir` as a child, load it with decisions, proofs and
/// checkpoint requests, and read its RSS.
async fn serve_rss(dir: &Path, admin: &str, seconds: u64) -> Result<ServeFigures> {
    let t0 = Instant::now();
    let child = ServeChild::start(dir).await?;
    let (pid, url) = (child.pid(), child.url.clone());
    let admin_client = Client::new(&url, Some(admin.to_owned()));
    let startup_s = t0.elapsed().as_secs_f64();
    let size = admin_client.get("/v1/log/checkpoint").await?;
    anyhow::ensure!(size.ok(), "no checkpoint: {}", size.message());
    let reply = admin_client
        .post(
            "/v1/principals",
            &json!({"uid": format!("Agent::\"bench-rss-{}\"", std::process::id())}),
        )
        .await?;
    let token = reply.body["token"]
        .as_str()
        .with_context(|| format!("no token: {}", reply.message()))?
        .to_owned();
    let client = Client::new(&url, Some(token));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut decisions, mut proofs) = (0u64, 0u64);
            let mut k = t;
            while Instant::now() < stop {
                k = k
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = if k % 2 == 0 {
                    let request = json!({"argv": ["/usr/bin/echo", "rss"]});
                    let r = c
                        .post("/v1/authorize", &crate::load::echo_body(&request, "bench"))
                        .await?;
                    decisions += 1;
                    r
                } else {
                    let cp = c.get("/v1/log/checkpoint").await?;
                    // The note's second line is the tree size.
                    let size: u64 = cp
                        .body
                        .as_str()
                        .and_then(|n| n.lines().nth(1)?.parse().ok())
                        .with_context(|| format!("not a checkpoint: {}", cp.body))?;
                    let index = (k >> 11) % size;
                    proofs += 1;
                    c.get(&format!(
                        "/v1/log/proof/inclusion?index={index}&size={size}"
                    ))
                    .await?
                };
                anyhow::ensure!(r.ok(), "{}", r.message());
            }
            Ok::<_, anyhow::Error>((decisions, proofs))
        }));
    }
    let mut peak = 0u64;
    while Instant::now() < stop {
        peak = peak.max(rss_kib(pid)?.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut decisions, mut proofs) = (0, 0);
    for t in tasks {
        let (d, p) = t.await??;
        decisions += d;
        proofs += p;
    }
    let (rss, hwm) = rss_kib(pid)?;
    drop(child);
    Ok(ServeFigures {
        rss_mib: rss as f64 / 1024.0,
        peak_rss_mib: hwm.max(peak) as f64 / 1024.0,
        startup_s,
        decisions,
        proofs,
    })
}

/// The peer, in its own Python process: append `n` entries to an
/// `AuditLog`, prove `proofs` random ones, verify the chain; prints JSON.
const AGT_SCRIPT: &str = r#"
import json, random, resource, sys, time, warnings
warnings.simplefilter("ignore")
from agentmesh.governance.audit import AuditLog
n, proofs = int(sys.argv[1]), int(sys.argv[2])
log = AuditLog()
ids = []
t = time.perf_counter()
for i in range(n):
    e = log.log("decision", "did:agent:bench", "exec", resource="/usr/bin/echo",
                data={"argv": ["/usr/bin/echo", "benchmark", str(i)], "host": "bench",
                      "cwd": "/tmp", "audience": "exec@bench"},
                outcome="success", policy_decision="allow")
    ids.append(e.entry_id)
append = time.perf_counter() - t
rng = random.Random(7)
lat = []
for _ in range(proofs):
    t = time.perf_counter()
    p = log.get_proof(ids[rng.randrange(n)])
    lat.append(time.perf_counter() - t)
    assert p is not None and p["verified"]
lat.sort()
t = time.perf_counter()
ok, err = log.verify_integrity()
verify = time.perf_counter() - t
assert ok, err
print(json.dumps({
    "append_per_sec": n / append,
    "proof_median_us": lat[len(lat) // 2] * 1e6,
    "proof_p99_us": lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1e6,
    "proofs": proofs,
    "verify_per_sec": n / verify,
    "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"#;

fn agt(python: &Path, n: u64, proofs: u64, dir: &Path) -> Result<Value> {
    let script = dir.join("agt_bench.py");
    std::fs::write(&script, AGT_SCRIPT)?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(n.to_string())
        .arg(proofs.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the toolkit's benchmark failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("the toolkit's benchmark printed no JSON")
}

/// Serve `dir` in process just long enough to sign a checkpoint of its
/// current size (and, the first time, to record its log key).
async fn publish_checkpoint(dir: &DataDir) -> Result<()> {
    let running = writ_cli::server::start(dir, &writ_cli::server::ServeArgs::unlimited()).await?;
    let _ = running.shutdown.send(());
    let _ = running.task.await;
    Ok(())
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub async fn bench_log(g: &Global, a: LogBench) -> Result<Exit> {
    anyhow::ensure!(
        a.entries > 0 && a.peer_entries > 0,
        "entry counts must be positive"
    );
    let tmp = std::env::temp_dir().join(format!("writ-bench-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let big = a.keep.clone().unwrap_or_else(|| tmp.join("big"));
    let admin = large_data_dir(g, &big).await?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!(
        "writ bench log: {cores} cores, {} entries (peer: {}), data dir {}",
        a.entries,
        a.peer_entries,
        big.display()
    );
    let large = large_log(&a, &big).await?;
    let size = large.size;

    // 4: writ serve on the large log.
    eprintln!("writ serve on {size} entries, 20 s of decisions and proofs:");
    let s = serve_rss(&big, admin.trim(), 20).await?;
    eprintln!(
        "  RSS {:.1} MiB (peak {:.1} MiB), ready after {:.1} s, {} decisions and {} proofs served",
        s.rss_mib, s.peak_rss_mib, s.startup_s, s.decisions, s.proofs
    );

    let peer = against_peer(g, &a, &tmp).await?;
    let report = log_report(&a, cores, &large, &s, peer);
    if g.json {
        writ_cli::print_json(&report)?;
    } else {
        let p = &large.proofs;
        println!(
            "durable append   {:>10.0} entries/s (target >= 50,000)",
            large.append_rate
        );
        println!(
            "inclusion proof  {:>10.1} us median at {size} entries, p99 {:.1} us (target <= 100 us)",
            p.median_us, p.p99_us
        );
        println!(
            "full verify      {:>10.0} entries/s (target >= 500,000)",
            large.verify_rate
        );
        println!(
            "serve RSS        {:>10.1} MiB peak at {size} entries (target <= 100 MiB)",
            s.peak_rss_mib
        );
        println!("peer ({} entries): {}", a.peer_entries, report["peer"]);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Exit::Ok)
}

/// The large data dir at `big`, made (or, with `--keep`, found) with its
/// administrator's token, served once so it has its log key and a first
/// checkpoint. Returns the token.
async fn large_data_dir(g: &Global, big: &Path) -> Result<String> {
    let dir = DataDir::new(big);
    let admin_file = big.join("bench-admin-token");
    let admin = if dir.is_initialized() {
        std::fs::read_to_string(&admin_file)
            .with_context(|| format!("{} was not made by writ bench log", big.display()))?
    } else {
        let admin = writ_cli::init_quiet(&Global {
            dir: big.to_owned(),
            ..g.clone()
        })
        .await?;
        writ_cli::write_atomic(&admin_file, admin.as_bytes(), 0o600)?;
        admin
    };
    // Serve once so the data dir has its log key and a first checkpoint.
    publish_checkpoint(&dir).await?;
    Ok(admin)
}

/// Steps 1-3 on the large log.
struct LargeFigures {
    size: u64,
    appended: u64,
    append_rate: f64,
    proofs: ProofFigures,
    verified: u64,
    verify_rate: f64,
}

/// 1-3: durable append up to `--entries`, inclusion proofs and full
/// verification at that size.
async fn large_log(a: &LogBench, big: &Path) -> Result<LargeFigures> {
    let dir = DataDir::new(big);
    let store = Arc::new(SqliteStore::open(&dir.db()).map_err(anyhow::Error::msg)?);
    eprintln!("durable append (window {}):", a.window);
    let (appended, append_rate) = {
        let (s, n, w) = (store.clone(), a.entries, a.window);
        tokio::task::spawn_blocking(move || append_to(&s, n, w, "large log")).await??
    };
    if appended == 0 {
        eprintln!("  the kept log already holds {} entries", store.log_size()?);
    }
    let size = store.log_size()?;
    // A checkpoint at the full size, so verification checks one there.
    publish_checkpoint(&dir).await?;
    eprintln!("inclusion proofs at {size} entries:");
    let p = {
        let (s, n) = (store.clone(), a.proofs);
        tokio::task::spawn_blocking(move || proofs(&s, n)).await??
    };
    eprintln!("  median {:.1} us, p99 {:.1} us", p.median_us, p.p99_us);
    eprintln!("full verification of {size} entries:");
    let (verified, verify_rate) = {
        let (d, s) = (DataDir::new(big), store.clone());
        tokio::task::spawn_blocking(move || verify(&d, &s)).await??
    };
    eprintln!("  {verify_rate:.0} entries/s");
    Ok(LargeFigures {
        size,
        appended,
        append_rate,
        proofs: p,
        verified,
        verify_rate,
    })
}

/// Step 5: writ and the peer on the same number of entries.
struct PeerFigures {
    proofs: u64,
    append: f64,
    proof: ProofFigures,
    verify: f64,
    agt: Option<Value>,
}

/// 5: the same number of entries in writ (a fresh data dir) and in the
/// peer (when `--agt-python` names one).
async fn against_peer(g: &Global, a: &LogBench, tmp: &Path) -> Result<PeerFigures> {
    eprintln!(
        "writ and the toolkit's AuditLog, {} entries each:",
        a.peer_entries
    );
    let small_root = tmp.join("peer");
    let small = DataDir::new(&small_root);
    writ_cli::init_quiet(&Global {
        dir: small_root,
        ..g.clone()
    })
    .await?;
    publish_checkpoint(&small).await?;
    // The toolkit finds an entry by a linear scan, so its proofs cost O(n).
    let peer_proofs = a.proofs.min(500);
    let store = Arc::new(SqliteStore::open(&small.db()).map_err(anyhow::Error::msg)?);
    let target = store.log_size()? + a.peer_entries;
    let (_, w_append) = {
        let (s, w) = (store.clone(), a.window);
        tokio::task::spawn_blocking(move || append_to(&s, target, w, "writ")).await??
    };
    let wp = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || proofs(&s, peer_proofs)).await??
    };
    let (_, w_verify) = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || verify(&small, &s)).await??
    };
    drop(store);
    let agt = match &a.agt_python {
        Some(py) => Some(agt(py, a.peer_entries, peer_proofs, tmp)?),
        None => {
            eprintln!("  the peer is skipped: pass --agt-python (scripts/bench-log sets it up)");
            None
        }
    };
    Ok(PeerFigures {
        proofs: peer_proofs,
        append: w_append,
        proof: wp,
        verify: w_verify,
        agt,
    })
}

/// Every figure of `writ bench log`, as `--json` prints it.
fn log_report(
    a: &LogBench,
    cores: usize,
    large: &LargeFigures,
    s: &ServeFigures,
    peer: PeerFigures,
) -> Value {
    let p = &large.proofs;
    let ratio = |w: f64, key: &str, higher_is_better: bool| -> Value {
        peer.agt
            .as_ref()
            .and_then(|p| p[key].as_f64())
            .map_or(Value::Null, |x| {
                json!(r2(if higher_is_better { w / x } else { x / w }))
            })
    };
    let over_agt = json!({
        "append": ratio(peer.append, "append_per_sec", true),
        "proof_latency": ratio(peer.proof.median_us, "proof_median_us", false),
        "verify": ratio(peer.verify, "verify_per_sec", true),
    });
    json!({
        "cores": cores,
        "entries": large.size,
        "append": {
            "entries": large.appended,
            "window": a.window,
            "per_sec": large.append_rate.round(),
        },
        "inclusion_proof": {"count": p.count, "median_us": r2(p.median_us), "p99_us": r2(p.p99_us)},
        "verify": {"entries": large.verified, "per_sec": large.verify_rate.round()},
        "serve": {
            "rss_mib": r2(s.rss_mib),
            "peak_rss_mib": r2(s.peak_rss_mib),
            "ready_after_s": r2(s.startup_s),
            "decisions": s.decisions,
            "proofs": s.proofs,
        },
        "peer": {
            "entries": a.peer_entries,
            "proofs": peer.proofs,
            "writ": {
                "append_per_sec": peer.append.round(),
                "proof_median_us": r2(peer.proof.median_us),
                "proof_p99_us": r2(peer.proof.p99_us),
                "verify_per_sec": peer.verify.round(),
            },
            "agt": peer.agt,
            "writ_over_agt": over_agt,
        },
    })
}
