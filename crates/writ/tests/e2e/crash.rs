//! Crash safety of the log: `writ serve` is killed with SIGKILL at random
//! moments (under concurrent decisions and checkpoint publishing, and during
//! start-up), again and again. After every restart every writ a client
//! received has its decision in the log, `writ log verify` passes offline,
//! and every checkpoint a client was shown is one the log still stands by.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

/// Kills under load (start-up kills come on top).
const CYCLES: usize = 24;
const CLIENTS: usize = 4;

/// xorshift64*: a reproducible random sequence from a printed seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The checkpoint text of a signed note (the signatures may grow with
/// witness cosignatures; the checkpoint may not change).
fn checkpoint_body(note: &str) -> &str {
    note.split("\n\n").next().unwrap_or(note)
}

#[derive(Default)]
struct Seen {
    /// jti of every writ a client received in full.
    writs: Vec<String>,
    /// Every checkpoint note a client was served.
    checkpoints: Vec<String>,
}

/// Decisions (and, from one client, checkpoint reads) until `stop`; a
/// failed request (the server is dying) is not a result.
fn load(addr: String, token: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>, n: usize) {
    let auth = format!("Bearer {token}");
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if n == 0 && i.is_multiple_of(4) {
            if let Ok(r) = try_http(&addr, "GET", "/v1/log/checkpoint", &[], &[]) {
                if r.status == 200 && r.text().contains("\n\n") {
                    seen.lock().unwrap().checkpoints.push(r.text());
                }
            }
            continue;
        }
        let body = serde_json::to_vec(&exec_req(
            &["/usr/bin/true", &format!("crash-{n}-{i}")],
            AUD,
        ))
        .unwrap();
        let Ok(r) = try_http(
            &addr,
            "POST",
            "/v1/authorize",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &body,
        ) else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        // A response cut short by the kill does not parse: not received.
        let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
            continue;
        };
        if r.status == 200 && v["decision"] == "allow" && v["writ"].is_string() {
            let jti = v["jti"]
                .as_str()
                .expect("an allow names its jti")
                .to_owned();
            seen.lock().unwrap().writs.push(jti);
        }
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_writ() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    // Checkpoints every 20 ms, so kills land during publishing too.
    let mut srv = Server::start_with(&["--checkpoint-interval-ms", "20"]);
    let token = srv.add_principal("Agent::\"crash\"");
    let mut logged: HashSet<String> = HashSet::new();
    let mut log_read = 0usize;
    let mut received_total = 0usize;

    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let (addr, token, stop, seen) =
                    (srv.addr.clone(), token.clone(), stop.clone(), seen.clone());
                std::thread::spawn(move || load(addr, token, stop, seen, n))
            })
            .collect();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(20 + rng.below(400)));
        srv.kill_hard();
        let loaded_ms = t0.elapsed().as_millis();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let seen = std::mem::take(&mut *seen.lock().unwrap());

        // Every few cycles, also kill a start-up at a random instant.
        if cycle % 4 == 3 {
            srv.spawn_and_kill_after(Duration::from_millis(rng.below(300)));
        }

        // Offline: the tree, every stored subtree hash and every checkpoint.
        let out = run_writ(
            &["--dir", srv.dir_str(), "log", "verify", "--json"],
            &[],
            None,
        );
        out.expect_code(0, &format!("writ log verify after kill {cycle}"));
        assert_eq!(out.json()["ok"], true, "{out:#?}");

        srv.restart();
        // Every writ a client received is in the log.
        let entries = srv.log_entries();
        for e in &entries[log_read..] {
            if e["entry"]["type"] == "decision" && e["entry"]["decision"] == "allow" {
                logged.insert(e["entry"]["jti"].as_str().unwrap().to_owned());
            }
        }
        log_read = entries.len();
        let lost: Vec<&String> = seen.writs.iter().filter(|j| !logged.contains(*j)).collect();
        assert!(
            lost.is_empty(),
            "kill {cycle} (seed {seed}): {} of {} writs clients received are not in the log: {lost:?}",
            lost.len(),
            seen.writs.len()
        );
        // Every checkpoint a client saw is still the log's checkpoint of that size.
        for note in &seen.checkpoints {
            let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
            let r = srv.get(&format!("/v1/log/checkpoints?from={size}&limit=1"), None);
            let stored = r.json()[0]["note"].as_str().map(str::to_owned);
            assert_eq!(
                stored.as_deref().map(checkpoint_body),
                Some(checkpoint_body(note)),
                "kill {cycle} (seed {seed}): a served checkpoint of size {size} is not the stored one"
            );
        }
        eprintln!(
            "kill {cycle}: after {loaded_ms} ms of load, {} writs received, {} checkpoints seen, log {} entries",
            seen.writs.len(),
            seen.checkpoints.len(),
            entries.len()
        );
        received_total += seen.writs.len();
    }
    assert!(
        received_total >= CYCLES * 5,
        "the load was too light to test anything: {received_total} writs in {CYCLES} cycles"
    );
    // The server still decides after all of it.
    srv.authorize_ok(&token, &exec_req(&["/usr/bin/true"], AUD));
}

/// A mounted tmpfs of `size`, unmounted (lazily) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (saying why) where this process may not mount: not root.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "writ-test",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            // CI and the developers' machines run as root, where this must work.
            assert!(!is_root(), "mount -t tmpfs failed as root: {err}");
            eprintln!("SKIPPED: the disk-full test needs root to mount a tmpfs ({err})");
            return None;
        }
        Some(Tmpfs { dir })
    }
    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

/// Fill the filesystem of `path` until it refuses a write; returns the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    // Smaller writes for the last partial chunk.
    for _ in 0..64 {
        match f.write(&chunk[..512]) {
            Ok(n) if n > 0 => written += n as u64,
            _ => break,
        }
    }
    let _ = f.sync_all();
    written
}

/// The data dir on a small tmpfs that is then filled: every answer while
/// full is either an allow whose entry is durable or `authority_unavailable`
/// (503), the server stays up, nothing is corrupted; once space returns it
/// allows again by itself, and the log verifies offline and after a restart.
#[test]
fn a_full_disk_denies_with_authority_unavailable_and_recovers() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let mut srv = Server::start_at(
        &fs.path().join("data"),
        &["--checkpoint-interval-ms", "50"],
        &[],
    );
    let token = srv.add_principal("Agent::\"disk\"");
    let mut acknowledged: Vec<String> = Vec::new();
    for i in 0..20 {
        let (_, jti, _) = srv.authorize_ok(
            &token,
            &exec_req(&["/usr/bin/true", &format!("before-{i}")], AUD),
        );
        acknowledged.push(jti);
    }
    let filler = fs.path().join("filler");
    let filled = fill(&filler);
    eprintln!("filled the tmpfs with {filled} bytes");

    // While full: only allow-with-durable-entry or 503 authority_unavailable.
    let (mut unavailable, mut allowed_while_full) = (0usize, 0usize);
    let t0 = Instant::now();
    let mut i = 0;
    while unavailable < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no authority_unavailable after {i} requests on a full disk ({allowed_while_full} allowed)"
        );
        i += 1;
        // Bigger requests so the WAL must grow.
        let pad = "x".repeat(2000);
        let r = srv.authorize(
            &token,
            &exec_req(&["/usr/bin/true", &format!("full-{i}"), &pad], AUD),
        );
        let v = r.json();
        match (r.status, v["decision"].as_str(), v["reason"].as_str()) {
            (200, Some("allow"), _) => {
                allowed_while_full += 1;
                acknowledged.push(v["jti"].as_str().unwrap().to_owned());
            }
            (503, Some("deny"), Some("authority_unavailable")) => {
                unavailable += 1;
                assert!(v.get("writ").is_none(), "{v}");
            }
            other => panic!("request {i} on a full disk: {other:?}: {v}\n{}", srv.log()),
        }
        if i % 10 == 0 {
            // Spending a nonce and renewing fail closed too.
            let r = srv.get("/healthz", None);
            assert_eq!(r.status, 200, "the server is still up");
        }
    }
    assert!(srv.is_running(), "the server survived a full disk");
    // The other write paths fail closed too.
    let mut refused = 0;
    for k in 0..5 {
        let r = srv.post(
            "/v1/principals",
            Some(&srv.admin_token),
            &json!({"uid": format!("Agent::\"while-full-{k}\"")}),
        );
        match (r.status, r.json()["reason"].as_str()) {
            (503, Some("authority_unavailable")) => refused += 1,
            (201, _) => {}
            other => panic!("adding a principal on a full disk: {other:?}: {}", r.text()),
        }
    }
    assert!(refused > 0, "every principal was added on a full disk");
    eprintln!(
        "full disk: {i} requests, {allowed_while_full} allowed (space SQLite had), {unavailable} authority_unavailable"
    );

    // Space returns: the server recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let t1 = Instant::now();
    loop {
        let r = srv.authorize(&token, &exec_req(&["/usr/bin/true", "after"], AUD));
        if r.status == 200 {
            acknowledged.push(r.json()["jti"].as_str().unwrap().to_owned());
            break;
        }
        assert_eq!(r.json()["reason"], "authority_unavailable", "{}", r.text());
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "no recovery 30 s after space returned: {}\n{}",
            r.text(),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "recovered {} ms after space returned",
        t1.elapsed().as_millis()
    );
    srv.authorize_ok(&token, &exec_req(&["/usr/bin/true", "after-2"], AUD));

    // Every acknowledged writ is in the log; the log verifies, online data
    // dir and after a hard restart.
    let check = |srv: &Server, what: &str| {
        let logged: HashSet<String> = srv
            .log_entries()
            .iter()
            .filter(|e| e["entry"]["type"] == "decision" && e["entry"]["decision"] == "allow")
            .map(|e| e["entry"]["jti"].as_str().unwrap().to_owned())
            .collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|j| !logged.contains(*j))
            .collect();
        assert!(
            lost.is_empty(),
            "{what}: acknowledged writs not in the log: {lost:?}"
        );
    };
    check(&srv, "after recovery");
    srv.kill_hard();
    let out = run_writ(
        &["--dir", srv.dir_str(), "log", "verify", "--json"],
        &[],
        None,
    );
    out.expect_code(0, "writ log verify after a full disk");
    assert_eq!(out.json()["ok"], true, "{out:#?}");
    srv.restart();
    check(&srv, "after a restart");
    srv.authorize_ok(&token, &exec_req(&["/usr/bin/true", "after-restart"], AUD));
    drop(srv);
}
