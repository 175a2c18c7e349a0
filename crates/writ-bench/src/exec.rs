//! `writ bench exec`: what governance costs a process, measured end to end
//! against a real `writ serve` on loopback.
//!
//! 1. Added latency: `PROGRAM`, `writ exec -- PROGRAM` (over TCP with a
//!    token) and `writ exec -- PROGRAM` over the server's Unix socket with
//!    no token (the kernel names the caller) run in turn, each timed from
//!    spawn to exit; the figure is the difference of the medians (and the
//!    median of the paired differences). With `hyperfine` on PATH the
//!    first pair is timed by it too, as a cross-check.
//! 2. Revocation to death: a governed `sleep` is started, then its writ is
//!    revoked over the API; the time from sending the revocation to the
//!    kernel no longer listing the process as running is recorded (polled
//!    every 200 µs), as percentiles over many runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::pct;
use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::child::ServeChild;
use writ_cli::{Exit, Global};
use writ_gate::client::Client;

#[derive(clap::Args, Debug)]
pub struct ExecBench {
    /// Runs of each command for the added latency.
    #[arg(long, default_value_t = 300)]
    pub runs: usize,
    /// Revocations timed.
    #[arg(long, default_value_t = 100)]
    pub revocations: usize,
    /// The program timed bare and under `writ exec`.
    #[arg(long, default_value = "/bin/true")]
    pub program: String,
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Target {
    writ: PathBuf,
    url: String,
    token: String,
    cwd: PathBuf,
    /// `unix:PATH` of the server's socket.
    unix: String,
}

impl Target {
    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.writ);
        c.arg("exec")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("WRIT_SERVER", &self.url)
            .env("WRIT_TOKEN", &self.token)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// `writ exec` over the Unix socket, with no token.
    fn exec_local(&self, args: &[&str]) -> Command {
        let mut c = self.exec(args);
        c.env_remove("WRIT_TOKEN").env("WRIT_SERVER", &self.unix);
        c
    }
}

/// The binary a user runs `writ exec` with: `writ` beside this one (the
/// bench runs in `writ-full`, where `writ` sends it). Measuring this one
/// instead would time a runner no user starts.
fn gate_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding this program's path")?;
    let gate = me.with_file_name("writ");
    anyhow::ensure!(
        gate.is_file(),
        "{} is missing: the benchmark times `writ exec` as users run it, from the `writ` \
         binary that `cargo build --release` puts beside {}",
        gate.display(),
        me.display()
    );
    Ok(gate)
}

fn time_run(mut c: Command) -> Result<Duration> {
    let t0 = Instant::now();
    let out = c.output().context("running the benchmark command")?;
    let took = t0.elapsed();
    if !out.status.success() {
        bail!(
            "the benchmark command failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

fn bare(program: &str, cwd: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// `writ serve` on a new data dir under `tmp` (also on its Unix socket,
/// where this user is the admin principal), and how to run `writ exec`
/// against it.
async fn exec_target(g: &Global, tmp: &Path) -> Result<(ServeChild, Target)> {
    let data = tmp.join("data");
    let token = writ_cli::init_quiet(&Global {
        dir: data.clone(),
        ..g.clone()
    })
    .await?;
    // The server also listens on its data dir's Unix socket, where this
    // user is the admin principal (peercred.json).
    let uid = rustix::process::geteuid().as_raw();
    std::fs::write(
        data.join(writ_identity::peercred::RULES_FILE),
        format!(r#"{{"rules": [{{"uid": {uid}, "principal": "User::\"admin\""}}]}}"#),
    )?;
    let server = ServeChild::start_with(&data, &["--unix"]).await?;
    let t = Target {
        writ: gate_binary()?,
        url: server.url.clone(),
        token: token.trim().to_owned(),
        cwd: tmp.to_owned(),
        unix: format!(
            "unix:{}",
            data.join(writ_gate::client::LOCAL_SOCKET).display()
        ),
    };
    Ok((server, t))
}

/// Run times (ms) of the bare program, `writ exec` of it and `writ exec`
/// over the Unix socket, `runs` of each after 10 to warm up, interleaved
/// so drift hits all alike.
fn added_latency(t: &Target, program: &str, runs: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let cwd = &t.cwd;
    tokio::task::block_in_place(move || {
        for _ in 0..10 {
            time_run(bare(program, cwd))?;
            time_run(t.exec(&["--", program]))?;
            time_run(t.exec_local(&["--", program]))?;
        }
        let mut b = Vec::with_capacity(runs);
        let mut w = Vec::with_capacity(runs);
        let mut l = Vec::with_capacity(runs);
        for _ in 0..runs {
            b.push(ms(time_run(bare(program, cwd))?));
            w.push(ms(time_run(t.exec(&["--", program]))?));
            l.push(ms(time_run(t.exec_local(&["--", program]))?));
        }
        Ok((b, w, l))
    })
}

/// `revocations` times: the ms from `writ revoke` to a governed
/// process's death.
async fn revoke_to_death(t: &Target, revocations: usize) -> Result<Vec<f64>> {
    let admin = Client::new(&t.url, Some(t.token.clone()));
    let mut deaths = Vec::with_capacity(revocations);
    for i in 0..revocations {
        deaths.push(ms(revoke_once(t, &admin).await.with_context(|| {
            format!("revocation {} of {}", i + 1, revocations)
        })?));
    }
    Ok(deaths)
}

pub async fn bench_exec(g: &Global, a: ExecBench) -> Result<Exit> {
    anyhow::ensure!(a.runs >= 10, "--runs must be at least 10");
    let tmp = std::env::temp_dir().join(format!("writ-bench-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let (server, t) = exec_target(g, &tmp).await?;
    let program = a.program.clone();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "writ bench exec: `{program}` vs `writ exec -- {program}` ({}), {} runs each, server on loopback, {cores} cores",
        t.writ.display(),
        a.runs
    );

    // 1. Added latency, interleaved so drift hits both alike.
    let (bare_ms, governed_ms, local_ms) = added_latency(&t, &program, a.runs)?;
    let local = sorted(local_ms);
    let paired = sorted(
        bare_ms
            .iter()
            .zip(&governed_ms)
            .map(|(b, w)| w - b)
            .collect(),
    );
    let (b, w) = (sorted(bare_ms), sorted(governed_ms));
    let added = pct(&w, 50.0) - pct(&b, 50.0);
    let row = |label: &str, v: &[f64]| {
        eprintln!(
            "  {label:<28} median {:>7.3} ms  p90 {:>7.3}  p99 {:>7.3}",
            pct(v, 50.0),
            pct(v, 90.0),
            pct(v, 99.0)
        );
    };
    row(&program, &b);
    row(&format!("writ exec -- {program}"), &w);
    row("writ exec (Unix socket)", &local);
    eprintln!(
        "  added by writ exec: {added:.3} ms (difference of medians); median of paired differences {:.3} ms; target <= 5 ms",
        pct(&paired, 50.0)
    );
    let added_local = pct(&local, 50.0) - pct(&b, 50.0);
    eprintln!("  added by writ exec over the Unix socket, no token: {added_local:.3} ms");
    let hyperfine = tokio::task::block_in_place(|| hyperfine(&t, &program, a.runs))?;
    if let Some((hb, hw)) = hyperfine {
        eprintln!(
            "  hyperfine (same run): {program} median {hb:.3} ms, writ exec median {hw:.3} ms, added {:.3} ms",
            hw - hb
        );
    }

    // 2. Revocation to death.
    let deaths = revoke_to_death(&t, a.revocations).await?;
    let d = sorted(deaths);
    eprintln!(
        "  writ revoke -> governed process dead, {} runs: p50 {:.1} ms  p90 {:.1}  p99 {:.1}  max {:.1}; target p99 <= 500 ms",
        d.len(),
        pct(&d, 50.0),
        pct(&d, 90.0),
        pct(&d, 99.0),
        pct(&d, 100.0)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
    let out = json!({
        "program": program,
        "runs": a.runs,
        "cores": cores,
        "bare_ms": {"p50": pct(&b, 50.0), "p90": pct(&b, 90.0), "p99": pct(&b, 99.0)},
        "writ_exec_ms": {"p50": pct(&w, 50.0), "p90": pct(&w, 90.0), "p99": pct(&w, 99.0)},
        "added_median_ms": added,
        "added_paired_median_ms": pct(&paired, 50.0),
        "writ_exec_unix_ms": {"p50": pct(&local, 50.0), "p90": pct(&local, 90.0), "p99": pct(&local, 99.0)},
        "added_unix_median_ms": added_local,
        "hyperfine": hyperfine.map(|(hb, hw)| json!({"bare_median_ms": hb, "writ_exec_median_ms": hw})),
        "revocations": d.len(),
        "revoke_to_death_ms": {"p50": pct(&d, 50.0), "p90": pct(&d, 90.0), "p99": pct(&d, 99.0), "max": pct(&d, 100.0)},
    });
    if g.json {
        writ_cli::print_json(&out)?;
    }
    Ok(Exit::Ok)
}

/// hyperfine's medians (ms) for the bare and governed program, if it is installed.
fn hyperfine(t: &Target, program: &str, runs: usize) -> Result<Option<(f64, f64)>> {
    if Command::new("hyperfine")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("  (hyperfine not installed: no cross-check)");
        return Ok(None);
    }
    let export = t.cwd.join("hyperfine.json");
    let governed = format!("{} exec -- {program}", t.writ.display());
    let status = Command::new("hyperfine")
        .args(["-N", "--style", "none", "--warmup", "10", "--runs"])
        .arg(runs.to_string())
        .arg("--export-json")
        .arg(&export)
        .arg(program)
        .arg(&governed)
        .env("WRIT_SERVER", &t.url)
        .env("WRIT_TOKEN", &t.token)
        .current_dir(&t.cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "hyperfine failed: {status}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&export)?)?;
    let median = |i: usize| v["results"][i]["median"].as_f64().map(|s| s * 1000.0);
    Ok(median(0).zip(median(1)))
}

/// Start a governed `sleep`, revoke its writ, and time until it is dead.
async fn revoke_once(t: &Target, admin: &Client) -> Result<Duration> {
    let mut runner = t
        .exec(&["--lifetime", "600", "--", "/usr/bin/sleep", "300"])
        .spawn()?;
    let result = async {
        // The governed program is the runner's child; its writ is in its environment.
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            if let Some(p) = child_of(runner.id()) {
                break p;
            }
            if let Some(st) = runner.try_wait()? {
                bail!("writ exec ended before the program started: {st}");
            }
            anyhow::ensure!(Instant::now() < deadline, "the program did not start");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let jti = loop {
            if let Some(j) = writ_jti_of(pid) {
                break j;
            }
            anyhow::ensure!(Instant::now() < deadline, "no WRIT_PARENT in the program");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // Let the runner's revocation stream settle, as a long-running
        // program's would have.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        let r = admin
            .post(
                "/v1/revocations",
                &json!({"jti": jti, "reason": "benchmark"}),
            )
            .await?;
        anyhow::ensure!(r.ok(), "revocation refused: {}", r.message());
        while running(pid) {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "the program outlived its revocation by 30 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(t0.elapsed())
    }
    .await;
    let _ = runner.kill();
    let _ = runner.wait();
    result
}

/// A child process of `pid` (any of its threads).
fn child_of(pid: u32) -> Option<u32> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        if let Some(c) = children.split_whitespace().next() {
            return c.parse().ok();
        }
    }
    None
}

/// The jti of the writ in a governed program's `WRIT_PARENT`, once it has
/// executed the program (before that, the environment is the runner's copy).
fn writ_jti_of(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let writ = env
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"WRIT_PARENT="))?;
    let payload = std::str::from_utf8(writ).ok()?.split('.').nth(1)?;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["jti"].as_str().map(str::to_owned)
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}
