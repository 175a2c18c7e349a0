//! `writ bench soak`: a steady offered rate against a real `writ serve` on
//! loopback for a long time, to show it holds: zero errors, flat memory and
//! the latency percentiles over the whole run.
//!
//! The load is open-loop: operation `k` is due at `start + k / rate` and is
//! sent then whether or not earlier ones have returned, and its latency is
//! measured from when it was due (so a stall shows up in the percentiles
//! instead of silently lowering the rate: no coordinated omission). One
//! operation is a `POST /v1/authorize` (decide, durable append, sign) and a
//! `POST /v1/verify` of the writ it returned, bound to the same request and
//! audience, which must answer `valid`. Any other answer, a transport error,
//! or more than `--in-flight-max` operations outstanding is an error.
//!
//! The server's RSS (`/proc/PID/status` `VmRSS`) is sampled every second.
//! "Flat" is judged on the samples after the warm-up (the first tenth of the
//! run, at least 5 s): the median of the last fifth against the median of
//! the first fifth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::pct;
use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::child::ServeChild;
use writ_cli::{Exit, Global};
use writ_gate::client::Client;

#[derive(clap::Args, Debug)]
pub struct SoakBench {
    /// How long to offer load, in seconds.
    #[arg(long, default_value_t = 600)]
    pub duration_secs: u64,
    /// Operations per second offered (each an authorize and a verify).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Operations outstanding at once before a new one counts as an error.
    #[arg(long, default_value_t = 1024)]
    pub in_flight_max: u64,
}

/// Longest soak accepted (a day), so a typo does not run for ever.
const SOAK_DURATION_SECS_MAX: u64 = 86_400;
/// Highest offered rate accepted.
const SOAK_RATE_MAX: u64 = 100_000;

fn median_u64(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

#[derive(Default)]
struct Tally {
    /// Authorize latencies (ms, from the instant the operation was due).
    authorize_ms: Vec<f64>,
    /// Whole-operation latencies (authorize + verify, from when it was due).
    op_ms: Vec<f64>,
    /// The first few errors, for the report.
    error_samples: Vec<String>,
}

/// One operation: authorize, then verify what came back.
async fn operation(c: &Client, k: u64, due: Instant, tally: &Mutex<Tally>) -> Result<()> {
    let request = json!({"argv": ["/usr/bin/echo", "soak", k.to_string()]});
    let r = c
        .post("/v1/authorize", &crate::load::echo_body(&request, "soak"))
        .await?;
    let authorized = due.elapsed();
    anyhow::ensure!(
        r.status == 200 && r.body["decision"] == "allow",
        "authorize answered {}: {}",
        r.status,
        r.body
    );
    let writ = r.body["writ"].as_str().context("an allow without a writ")?;
    let v = c
        .post(
            "/v1/verify",
            &json!({"writ": writ, "request": request, "audience": "exec@soak",
                    "environment": {"host": "soak", "cwd": "/tmp"}}),
        )
        .await?;
    let done = due.elapsed();
    anyhow::ensure!(
        v.status == 200 && v.body["valid"] == true,
        "verify answered {}: {}",
        v.status,
        v.body
    );
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    t.authorize_ms.push(authorized.as_secs_f64() * 1000.0);
    t.op_ms.push(done.as_secs_f64() * 1000.0);
    Ok(())
}

pub async fn bench_soak(g: &Global, a: SoakBench) -> Result<Exit> {
    anyhow::ensure!(
        (1..=SOAK_DURATION_SECS_MAX).contains(&a.duration_secs),
        "--duration-secs must be 1 to {SOAK_DURATION_SECS_MAX}"
    );
    anyhow::ensure!(
        (1..=SOAK_RATE_MAX).contains(&a.rate),
        "--rate must be 1 to {SOAK_RATE_MAX}"
    );
    let tmp = std::env::temp_dir().join(format!("writ-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let (server, client) = soak_server(g, &tmp.join("data")).await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "writ bench soak: {} ops/s (authorize + verify each) for {} s against writ serve on loopback, {cores} cores",
        a.rate, a.duration_secs
    );
    let run = offer(&a, &client, server.pid()).await?;
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
    let errors = run.errors;
    let out = soak_report(&a, cores, run);
    if g.json {
        writ_cli::print_json(&out)?;
    }
    Ok(if errors == 0 { Exit::Ok } else { Exit::Failed })
}

/// `writ serve` on a new data dir at `data`, and a client of a principal
/// of its own.
async fn soak_server(g: &Global, data: &std::path::Path) -> Result<(ServeChild, Client)> {
    let admin = writ_cli::init_quiet(&Global {
        dir: data.to_owned(),
        ..g.clone()
    })
    .await?;
    let server = ServeChild::start(data).await?;
    let reply = Client::new(&server.url, Some(admin.trim().to_owned()))
        .post("/v1/principals", &json!({"uid": "Agent::\"soak\""}))
        .await?;
    let token = reply.body["token"]
        .as_str()
        .with_context(|| format!("no token: {}", reply.message()))?
        .to_owned();
    let client = Client::new(&server.url, Some(token));
    Ok((server, client))
}

/// What the run saw.
struct Run {
    total: u64,
    errors: u64,
    elapsed: f64,
    tally: Tally,
    rss_start_kib: u64,
    /// (seconds into the run, RSS in KiB), one a second.
    rss_samples: Vec<(f64, u64)>,
}

/// Offer `a.rate` operations a second for `a.duration_secs` (open loop),
/// sampling the server's RSS every second.
async fn offer(a: &SoakBench, client: &Client, pid: u32) -> Result<Run> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let errors = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let total = a.rate * a.duration_secs;
    let interval = Duration::from_secs(1).as_secs_f64() / a.rate as f64;
    let start = Instant::now() + Duration::from_millis(100);
    let rss_start_kib = rss_kib(pid)?;
    let mut rss_samples: Vec<(f64, u64)> = Vec::new();
    let mut next_sample = start;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 * interval);
        while Instant::now() >= next_sample {
            rss_samples.push((
                next_sample.saturating_duration_since(start).as_secs_f64(),
                rss_kib(pid)?,
            ));
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep_until(due.into()).await;
        // Reap what finished, so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= a.in_flight_max {
            errors.fetch_add(1, Ordering::Relaxed);
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            if t.error_samples.len() < 5 {
                t.error_samples
                    .push(format!("op {k}: {} operations in flight", a.in_flight_max));
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (c, tally, errors, in_flight) = (
            client.clone(),
            tally.clone(),
            errors.clone(),
            in_flight.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = operation(&c, k, due, &tally).await {
                errors.fetch_add(1, Ordering::Relaxed);
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                if t.error_samples.len() < 5 {
                    t.error_samples.push(format!("op {k}: {e:#}"));
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    rss_samples.push((elapsed, rss_kib(pid)?));
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Run {
        total,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        tally,
        rss_start_kib,
        rss_samples,
    })
}

/// The run's figures on standard error, and as the report `--json` prints.
fn soak_report(a: &SoakBench, cores: usize, run: Run) -> Value {
    let Run {
        total,
        errors,
        elapsed,
        tally: t,
        rss_start_kib,
        rss_samples,
    } = run;
    let mut auth = t.authorize_ms;
    let mut ops = t.op_ms;
    auth.sort_by(|x, y| x.total_cmp(y));
    ops.sort_by(|x, y| x.total_cmp(y));
    let completed = ops.len() as u64;

    // Memory: after the warm-up, the first fifth against the last fifth.
    let warm_up = (a.duration_secs as f64 / 10.0).max(5.0);
    let steady: Vec<u64> = rss_samples
        .iter()
        .filter(|(s, _)| *s >= warm_up)
        .map(|(_, r)| *r)
        .collect();
    let fifth = (steady.len() / 5).max(1);
    let early = median_u64(steady.get(..fifth.min(steady.len())).unwrap_or(&[]));
    let late = median_u64(
        steady
            .get(steady.len().saturating_sub(fifth)..)
            .unwrap_or(&[]),
    );
    let rss_max = rss_samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let mib = |k: u64| k as f64 / 1024.0;
    let growth_mib = mib(late) - mib(early);

    eprintln!(
        "  offered {total} ops ({} ops/s), completed {completed}, errors {errors}, in {elapsed:.1} s",
        a.rate
    );
    let percentiles = |v: &[f64]| {
        format!(
            "p50 {:.2} ms  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            pct(v, 50.0),
            pct(v, 90.0),
            pct(v, 99.0),
            pct(v, 99.9),
            pct(v, 100.0)
        )
    };
    eprintln!(
        "  authorize latency (from due time): {}",
        percentiles(&auth)
    );
    eprintln!("  authorize + verify:                {}", percentiles(&ops));
    eprintln!(
        "  serve RSS: {:.1} MiB at start, {:.1} MiB early median, {:.1} MiB late median (growth {growth_mib:+.1} MiB), {:.1} MiB max, {} samples",
        mib(rss_start_kib),
        mib(early),
        mib(late),
        mib(rss_max),
        rss_samples.len()
    );
    for e in &t.error_samples {
        eprintln!("  error: {e}");
    }
    let lat = |v: &[f64]| -> Value {
        json!({"p50": pct(v, 50.0), "p90": pct(v, 90.0), "p99": pct(v, 99.0),
               "p999": pct(v, 99.9), "max": pct(v, 100.0)})
    };
    json!({
        "duration_secs": a.duration_secs,
        "rate": a.rate,
        "cores": cores,
        "offered": total,
        "completed": completed,
        "errors": errors,
        "elapsed_secs": elapsed,
        "authorize_ms": lat(&auth),
        "op_ms": lat(&ops),
        "rss_mib": {
            "start": mib(rss_start_kib),
            "early_median": mib(early),
            "late_median": mib(late),
            "growth": growth_mib,
            "max": mib(rss_max),
            "samples": rss_samples.iter().map(|(s, r)| json!([s, mib(*r)])).collect::<Vec<_>>(),
        },
        "error_samples": t.error_samples,
    })
}
