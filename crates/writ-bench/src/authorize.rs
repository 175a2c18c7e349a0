//! `writ bench authorize`: the bare ceiling, the governed in-process decision,
//! HTTP decisions on loopback, and verification against a bare Ed25519 verify,
//! all in one run so the ratios compare like with like.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use writ_artifact::{
    Claims, Clock, EnvironmentBinding, KeyRing, Lineage, LogPointer, NoStatus, OsEntropy,
    SystemClock, VerifyOptions, WritBody, WritKey,
};
use writ_authority::{Authority, AuthorizeRequest, Principal};
use writ_cli::server::Running;
use writ_cli::{DataDir, Exit, Global};
use writ_gate::client::Client;
use writ_policy::{Bundle, DecisionInput};

use crate::load::{by_second, http, http_wrk, open_loop_at, request, HttpResult, OpenLoopResult};
use crate::stats::{median, ns_per_op};

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
    /// `exec` request with no parent, not started), and the median time of
    /// one governed decision at a time beside its floor measured in turn
    /// with it (decide + sign + one fdatasync of 4 KiB on the log's disk);
    /// nothing else.
    #[arg(long)]
    pub parts: bool,
}

/// The Cedar context the authority builds for [`request`] (no parent).
fn decision_context(req: &AuthorizeRequest) -> Value {
    json!({
        "request": req.request, "environment": req.environment, "audience": req.audience,
        "scope": {"read": req.scope.read, "write": req.scope.write, "net": false},
        "lineage": {"depth": 0, "root_principal": "Agent::\"bench\"", "parent_action": ""},
    })
}

/// One thread's nanoseconds for one Cedar decision of `req` and for one
/// signature of `claims`.
fn decide_and_sign(
    bundle: &Bundle,
    key: &WritKey,
    req: &AuthorizeRequest,
    ctx: &Value,
    claims: &Claims,
) -> (f64, f64) {
    let decide = ns_per_op(1.0, || {
        let _ = std::hint::black_box(bundle.decide(DecisionInput {
            principal: "Agent::\"bench\"",
            action: &req.action,
            resource: &req.resource,
            context: ctx,
        }));
    });
    let sign = ns_per_op(1.0, || {
        let _ = std::hint::black_box(writ_artifact::sign(key, claims));
    });
    (decide, sign)
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

/// The bench request, its Cedar context and the claims of a writ for it
/// under `bundle`, issued now.
fn inputs(bundle: &Bundle) -> Result<(AuthorizeRequest, Value, Claims)> {
    let req = request();
    let ctx = decision_context(&req);
    let claims = claims_for(
        &req,
        bundle.hash(),
        SystemClock.now_unix_secs(),
        "0123456789abcdef0123456789abcdef",
    )?;
    Ok((req, ctx, claims))
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Cedar decision + Ed25519 signature of the writ, on every core, no log.
fn ceiling(bundle: &Arc<Bundle>, key: &Arc<WritKey>, secs: u64) -> Result<f64> {
    let (req, ctx, claims) = inputs(bundle)?;
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
async fn parts(
    authority: &Arc<Authority>,
    bundle: &Arc<Bundle>,
    key: &Arc<WritKey>,
    dir: &std::path::Path,
) -> Result<()> {
    use writ_log::{DecisionEntry, Entry, Outcome};
    let (req, ctx, claims) = inputs(bundle)?;
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
        probe: false,
        content: None,
    }));
    let leaf = entry.to_leaf().map_err(anyhow::Error::msg)?;
    let (decide, sign) = decide_and_sign(bundle, key, &req, &ctx, &claims);
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
    let (one, sync) = one_at_a_time(authority, dir).await?;
    let ns = |x: f64| format!("{:.1} us", x / 1000.0);
    println!("decide {} (of which parsing three entity UIDs {})  sign {}  to_leaf {} ({} bytes)  leaf_hash {}  digests {}  authorize one at a time {}",
        ns(decide), ns(uids), ns(sign), ns(to_leaf), leaf.len(), ns(hash), ns(digests), ns(one));
    let floor = decide + sign + sync;
    println!(
        "floor: decide {} + sign {} + one fdatasync of 4 KiB in the data dir {} = {}; authorize one at a time (median) {} = {:.2}x the floor",
        ns(decide), ns(sign), ns(sync), ns(floor), ns(one), one / floor
    );
    Ok(())
}

/// Rounds of [`ONE_AT_A_TIME_ROUND`] governed decisions, one at a time, in
/// turn with as many fdatasyncs of a 4 KiB write to a file in the data dir
/// `dir` (the disk the log is on), so drift hits both alike: the median ns
/// of one decision and of one fdatasync.
async fn one_at_a_time(authority: &Arc<Authority>, dir: &std::path::Path) -> Result<(f64, f64)> {
    use std::os::unix::fs::FileExt as _;
    let who = Principal::new("Agent::\"bench\"", false);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("fdatasync-floor"))
        .context("the fdatasync floor's file")?;
    let page = [7u8; 4096];
    file.write_all_at(&page, 0)?;
    file.sync_all()?;
    let (mut decisions, mut syncs) = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        for _ in 0..ONE_AT_A_TIME_ROUND {
            let t = Instant::now();
            let r = authority.authorize(&who, request()).await;
            decisions.push(t.elapsed().as_nanos() as f64);
            anyhow::ensure!(
                r.as_ref().is_ok_and(|r| r.is_allow()),
                "a governed decision failed"
            );
        }
        for _ in 0..ONE_AT_A_TIME_ROUND {
            let t = Instant::now();
            file.write_all_at(&page, 0)?;
            file.sync_data()?;
            syncs.push(t.elapsed().as_nanos() as f64);
        }
    }
    drop(file);
    let _ = std::fs::remove_file(dir.join("fdatasync-floor"));
    Ok((median(decisions), median(syncs)))
}

/// Decisions (and fdatasyncs) per round of [`one_at_a_time`].
const ONE_AT_A_TIME_ROUND: usize = 100;

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

pub async fn bench_authorize(g: &Global, a: AuthorizeBench) -> Result<Exit> {
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
        let admin = writ_cli::init_quiet(&Global {
            dir: tmp.clone(),
            ..g.clone()
        })
        .await?;
        let running =
            writ_cli::server::start(&dir, &writ_cli::server::ServeArgs::unlimited()).await?;
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
    running: &Running,
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
    eprintln!(
        "writ bench authorize: {} cores, {} s per measurement, median of {} runs",
        threads(),
        a.seconds,
        a.runs
    );
    if a.parts {
        return parts(&authority, &bundle, &key, tmp).await;
    }
    if a.governed_only {
        return governed_runs(g, &authority, &a.tasks, a.seconds, a.runs).await;
    }
    if a.open_loop_only {
        return open_loop_runs(g, a, running, &token).await;
    }
    let runs = measure_runs(a, running, &token, &bundle, &key, tmp).await?;
    let costs = one_thread_costs(a, &bundle, &key)?;
    let summary = Summary::of(a, runs, costs);
    if g.json {
        writ_cli::print_json(&summary.report(a, authority.log_size()))?;
    } else {
        summary.print(a);
    }
    Ok(())
}

/// `--open-loop-only`: the open-loop measurement alone, each run printed.
async fn open_loop_runs(
    g: &Global,
    a: &AuthorizeBench,
    running: &Running,
    token: &str,
) -> Result<()> {
    let authority = &running.authority;
    for _ in 0..a.runs {
        let o = open_loop_at(running.addr, token, a.clients, a.rate, a.seconds).await?;
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
        let (by, log) = (by_second(&o.p99_ms_by_second), authority.log_size());
        println!(
            "open loop {:.0}/s offered {:.0}/s: p50 {:.2} ms, p99 {:.2} ms (by second {by}; {} sent late; log {log} entries)",
            o.rate, o.offered, o.p50_ms, o.p99_ms, o.late
        );
    }
    Ok(())
}

/// What each run measured: the ceiling, the governed rate at each caller
/// count, the HTTP loads.
struct Runs {
    ceil: Vec<f64>,
    /// One list of runs per caller count of `--tasks`.
    gov: Vec<Vec<f64>>,
    https: Vec<HttpResult>,
    wrks: Vec<HttpResult>,
    opens: Vec<OpenLoopResult>,
}

/// `a.runs` runs of the ceiling, the governed decision and the HTTP loads,
/// each run's figures on standard error as it ends.
async fn measure_runs(
    a: &AuthorizeBench,
    running: &Running,
    token: &str,
    bundle: &Arc<Bundle>,
    key: &Arc<WritKey>,
    tmp: &std::path::Path,
) -> Result<Runs> {
    let (url, secs, authority) = (running.url(), a.seconds, &running.authority);
    let mut r = Runs {
        ceil: Vec::new(),
        gov: vec![Vec::new(); a.tasks.len()],
        https: Vec::new(),
        wrks: Vec::new(),
        opens: Vec::new(),
    };
    for run in 1..=a.runs {
        let (b, k) = (bundle.clone(), key.clone());
        let c = tokio::task::spawn_blocking(move || ceiling(&b, &k, secs)).await??;
        let mut gvs = Vec::new();
        for (i, &t) in a.tasks.iter().enumerate() {
            let gv = governed(authority, t, secs).await?;
            r.gov[i].push(gv);
            gvs.push(format!("{gv:.0}/s at {t} callers"));
        }
        let h = http(&url, token, a.clients, secs).await?;
        let w = {
            let (tmp, url, token, clients) =
                (tmp.to_owned(), url.clone(), token.to_owned(), a.clients);
            tokio::task::spawn_blocking(move || http_wrk(&tmp, &url, &token, clients, secs))
                .await??
        };
        let o = open_loop_at(running.addr, token, a.clients, a.rate, a.seconds).await?;
        let (governed, by) = (gvs.join(", "), by_second(&o.p99_ms_by_second));
        let wrk = w.as_ref().map_or(String::new(), |w| {
            format!(
                ", http (wrk) {:.0}/s (p50 {:.2} ms, p99 {:.2} ms)",
                w.rate, w.p50_ms, w.p99_ms
            )
        });
        eprintln!(
            "  run {run}: ceiling {c:.0}/s, governed {governed}, http (in-process client) {:.0}/s (p50 {:.2} ms, p99 {:.2} ms){wrk}, http open loop {:.0}/s offered {:.0}/s (p50 {:.2} ms, p99 {:.2} ms, by second {by}, {} sent late)",
            h.rate, h.p50_ms, h.p99_ms, o.rate, o.offered, o.p50_ms, o.p99_ms, o.late,
        );
        if let Some(w) = w {
            r.wrks.push(w);
        }
        r.ceil.push(c);
        r.https.push(h);
        r.opens.push(o);
    }
    Ok(r)
}

/// One-thread costs, in nanoseconds: a full offline writ verification
/// against a bare Ed25519 verify of the same signing input (medians of
/// `a.runs`), one Cedar decision and one signature.
struct Costs {
    verify_bare: f64,
    verify_full: f64,
    decide: f64,
    sign: f64,
}

fn one_thread_costs(a: &AuthorizeBench, bundle: &Arc<Bundle>, key: &Arc<WritKey>) -> Result<Costs> {
    // Verification: full offline writ verification vs a bare Ed25519 verify of
    // the same signing input.
    let req = request();
    let now = SystemClock.now_unix_secs();
    let claims = claims_for(&req, bundle.hash(), now, "0123456789abcdef0123456789abcdef")?;
    let token_str = writ_artifact::sign(key, &claims).map_err(anyhow::Error::msg)?;
    let mut ring = KeyRing::new();
    ring.insert(key.verifying_key());
    let opts = VerifyOptions {
        environment_digest: Some(claims.writ.environment.digest.clone()),
        accepted_policies: Some([bundle.hash().to_owned()].into()),
        ..VerifyOptions::enforcing(
            now,
            req.audience.clone(),
            claims.writ.request.clone(),
            Default::default(),
        )
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
    let ctx = decision_context(&req);
    let (decide, sign) = decide_and_sign(bundle, key, &req, &ctx, &claims);
    Ok(Costs {
        verify_bare: median(bare),
        verify_full: median(full),
        decide,
        sign,
    })
}

/// The medians over the runs, and the caller count the governed rate is
/// reported at.
struct Summary {
    ceiling: f64,
    gov_medians: Vec<f64>,
    gov_ratios: Vec<f64>,
    best_at: usize,
    gv: f64,
    gv_ratio: f64,
    http: (f64, f64, f64),
    /// Rate, p50, p99, requests sent late.
    open: (f64, f64, f64, f64),
    p99_ms_by_second_per_run: Vec<Vec<f64>>,
    wrk: Option<Value>,
    costs: Costs,
}

impl Summary {
    fn of(a: &AuthorizeBench, r: Runs, costs: Costs) -> Summary {
        // Each ratio is taken within a run (the machine's speed drifts between
        // runs), then the median over the runs.
        let gov_ratios: Vec<f64> = r
            .gov
            .iter()
            .map(|runs| median(runs.iter().zip(&r.ceil).map(|(g, c)| g / c).collect()))
            .collect();
        let gov_medians: Vec<f64> = r.gov.into_iter().map(median).collect();
        let best = (0..a.tasks.len())
            .max_by(|&x, &y| gov_ratios[x].total_cmp(&gov_ratios[y]))
            .unwrap_or(0);
        let https = &r.https;
        let opens = &r.opens;
        let wrks = &r.wrks;
        Summary {
            ceiling: median(r.ceil),
            best_at: a.tasks[best],
            gv: gov_medians[best],
            gv_ratio: gov_ratios[best],
            gov_medians,
            gov_ratios,
            http: (
                median(https.iter().map(|h| h.rate).collect()),
                median(https.iter().map(|h| h.p50_ms).collect()),
                median(https.iter().map(|h| h.p99_ms).collect()),
            ),
            open: (
                median(opens.iter().map(|o| o.rate).collect()),
                median(opens.iter().map(|o| o.p50_ms).collect()),
                median(opens.iter().map(|o| o.p99_ms).collect()),
                median(opens.iter().map(|o| o.late as f64).collect()),
            ),
            p99_ms_by_second_per_run: opens.iter().map(|o| o.p99_ms_by_second.clone()).collect(),
            wrk: (!wrks.is_empty()).then(|| {
                json!({
                    "allow_per_sec": median(wrks.iter().map(|h| h.rate).collect()).round(),
                    "p50_ms": median(wrks.iter().map(|h| h.p50_ms).collect()),
                    "p99_ms": median(wrks.iter().map(|h| h.p99_ms).collect()),
                })
            }),
            costs,
        }
    }

    /// The report `--json` prints.
    fn report(&self, a: &AuthorizeBench, log_entries: u64) -> Value {
        let ratio = |x: f64| (x * 1000.0).round() / 1000.0;
        let (hr, p50, p99) = self.http;
        let open = self.open;
        let (vb, vf) = (self.costs.verify_bare, self.costs.verify_full);
        json!({
            "cores": threads(),
            "seconds_per_measurement": a.seconds,
            "runs": a.runs,
            "ceiling_per_sec": self.ceiling.round(),
            "governed_per_sec": self.gv.round(),
            "governed_callers": self.best_at,
            "governed_over_ceiling": ratio(self.gv_ratio),
            "governed_by_callers": a.tasks.iter().zip(self.gov_medians.iter().zip(&self.gov_ratios)).map(|(t, (g, r))| json!({
                "callers": t, "per_sec": g.round(), "over_ceiling": ratio(*r),
            })).collect::<Vec<_>>(),
            "http_clients": a.clients,
            "http_wrk": self.wrk,
            "http_allow_per_sec": hr.round(),
            "http_p50_ms": p50,
            "http_p99_ms": p99,
            "http_open_loop": {
                "offered_per_sec": a.rate,
                "allow_per_sec": open.0.round(),
                "p50_ms": open.1,
                "p99_ms": open.2,
                "sent_late": open.3,
                "p99_ms_by_second_per_run": self.p99_ms_by_second_per_run,
            },
            "verify_bare_ed25519_us": (vb / 10.0).round() / 100.0,
            "verify_writ_us": (vf / 10.0).round() / 100.0,
            "verify_over_bare": (vf / vb * 1000.0).round() / 1000.0,
            "cedar_decide_us": (self.costs.decide / 10.0).round() / 100.0,
            "sign_writ_us": (self.costs.sign / 10.0).round() / 100.0,
            "log_entries": log_entries,
            "targets": {"governed_over_ceiling_min": 0.6, "http_allow_per_sec_min": 10000, "http_p99_ms_max": 5.0, "verify_over_bare_max": 1.3},
        })
    }

    /// The lines printed without `--json`.
    fn print(&self, a: &AuthorizeBench) {
        let (c, best_at, gv, gv_ratio) = (self.ceiling, self.best_at, self.gv, self.gv_ratio);
        let (hr, p50, p99) = self.http;
        let open = self.open;
        println!(
            "ceiling (Cedar + Ed25519 sign, {} threads)   {c:>10.0} /s",
            threads()
        );
        for (t, (g, r)) in a
            .tasks
            .iter()
            .zip(self.gov_medians.iter().zip(&self.gov_ratios))
        {
            println!("governed in-process, {t:>4} callers          {g:>10.0} /s   ratio {r:.3}");
        }
        println!(
            "governed rate (best of the above, {best_at} callers) {gv:>7.0} /s   ratio {gv_ratio:.3} (target >= 0.6; ratios are per run, then the median)"
        );
        if let Some(w) = &self.wrk {
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
            self.costs.decide / 1000.0,
            self.costs.sign / 1000.0
        );
        let (vb, vf) = (self.costs.verify_bare, self.costs.verify_full);
        println!(
            "verify: bare Ed25519 {:.2} us, writ {:.2} us      ratio {:.3} (target <= 1.3)",
            vb / 1000.0,
            vf / 1000.0,
            vf / vb
        );
    }
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
async fn stop(running: Running, tmp: &std::path::Path) {
    let _ = running.shutdown.send(());
    let _ = running.task.await;
    let _ = std::fs::remove_dir_all(tmp);
}
