//! Connection hygiene against a real `writ serve`: half-sent requests are
//! dropped, connections past the limit are closed at once (and the
//! open-file limit is respected), and a principal over its rate limit gets
//! 429 while the others go on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

/// Connect and send `bytes`, then stop.
fn half_sent(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Read until the server closes; what it sent, and how long that took.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let t = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open past {limit:?}: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), t.elapsed())
}

/// A counter or gauge from `/metrics`.
fn metric(srv: &Server, name: &str) -> f64 {
    let text = srv.get("/metrics", Some(&srv.admin_token)).text();
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[test]
fn half_sent_requests_are_dropped_and_health_answers_meanwhile() {
    // The default deadline is 20 s (the issue asks for at most 30): shown
    // by --help; the test uses 2 s.
    let help = run_writ(&["serve", "--help"], &[], None);
    assert!(help.stdout.contains("[default: 20]"), "{}", help.stdout);
    let srv = Server::start_with(&["--request-timeout-secs", "2"]);
    // 500 connections that send half a request head.
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| half_sent(&srv.addr, b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\n"))
        .collect();
    // Meanwhile the server answers.
    let t = Instant::now();
    assert_eq!(srv.get("/healthz", None).status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Each is dropped at its deadline, not later.
    for s in &mut slow {
        let (_, took) = until_closed(s, Duration::from_secs(10));
        assert!(took < Duration::from_secs(6), "{took:?}");
    }
    // A head that arrives but a body that does not: 400, then closed.
    let mut body = half_sent(
        &srv.addr,
        format!(
            "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"action\"",
            srv.admin_token
        )
        .as_bytes(),
    );
    let (answer, took) = until_closed(&mut body, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(metric(&srv, "writ_connections_timed_out_total") >= 500.0);
    // An idle keep-alive connection is closed after as long.
    let mut idle = TcpStream::connect(&srv.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, took) = until_closed(&mut idle, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// Past the limit (or, from one address, past half of it: one peer cannot
/// take them all) a connection is closed at once.
#[test]
fn connections_past_the_limit_are_closed_at_once() {
    let srv = Server::start_with(&["--max-connections", "8", "--request-timeout-secs", "3"]);
    // Eight connections from one address, each sending half a request:
    // that address may hold four; the others are closed at once.
    let mut conns: Vec<TcpStream> = (0..8)
        .map(|_| half_sent(&srv.addr, b"GET /healthz HTTP/1.1\r\n"))
        .collect();
    let t = Instant::now();
    let mut closed = 0;
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Ok(n) => panic!("a half-sent request was answered: {:?}", &buf[..n]),
            // Still open, waiting for the rest of its request.
            Err(_) => {}
        }
    }
    assert!(closed >= 4, "only {closed} of 8 were closed");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Once the slow ones are dropped, the server answers again.
    drop(conns);
    wait_for("a connection slot", Duration::from_secs(6), || {
        try_http(&srv.addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert!(metric(&srv, "writ_connections_refused_total") >= 4.0);
}

#[test]
fn the_connection_limit_fits_the_open_file_limit() {
    // Under `ulimit -n 256`, 1024 connections would exhaust the server's
    // files (and its store with them): it lowers the limit and says so.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let admin = init_dir(&dir)["admin_token"].as_str().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = tmp.path().join("serve.log");
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -n 256 && exec {} --dir {} serve --listen {addr} --request-timeout-secs 2",
                writ_bin(),
                dir.display()
            ),
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the server", Duration::from_secs(10), || {
        try_http(&addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    let slow: Vec<TcpStream> = (0..400)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&addr).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\n").ok()?;
            Some(s)
        })
        .collect();
    assert!(slow.len() > 300, "{}", slow.len());
    // The server still decides once they are dropped: nothing ran out.
    drop(slow);
    wait_for("the server to decide again", Duration::from_secs(8), || {
        let auth = format!("Bearer {admin}");
        let body = exec_req(&["/usr/bin/true"], AUD).to_string();
        try_http(
            &addr,
            "POST",
            "/v1/authorize",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .is_ok_and(|r| r.status == 200)
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("--max-connections lowered"), "{text}");
    assert!(!text.contains("Too many open files"), "{text}");
}

#[test]
fn a_principal_over_its_rate_limit_gets_429_and_the_others_go_on() {
    let srv = Server::start_with(&["--rate-limit", "2", "--rate-burst", "5"]);
    let agent = srv.add_principal("Agent::\"busy\"");
    let other = srv.add_principal("Agent::\"quiet\"");
    let req = exec_req(&["/usr/bin/true"], AUD);
    // A run of the agent's, started in the same request.
    let mut run = exec_req(&["/usr/bin/sleep", "60"], AUD);
    run["start"] = json!(true);
    run["lifetime_secs"] = json!(600);
    let (_, run_jti, _) = srv.authorize_ok(&agent, &run);
    for _ in 0..4 {
        assert_eq!(srv.authorize(&agent, &req).status, 200);
    }
    let before = srv.public_log_entries().len();
    let r = srv.authorize(&agent, &req);
    assert_eq!(r.status, 429, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["error"].as_str(), v["reason"].as_str()),
        (Some("rate_limited"), Some("authority_unavailable"))
    );
    assert!(r
        .header("retry-after")
        .is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    // Refused before anything is decided: a flood does not fill the log.
    assert_eq!(srv.public_log_entries().len(), before);
    // The run's renewal has a budget of its own: a flood by the principal
    // (or by a governed program with its credential) does not end it.
    let r = srv.post(
        &format!("/v1/executions/{run_jti}/renew"),
        Some(&agent),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Another principal has its own budget; an enforcement point denies.
    assert_eq!(srv.authorize(&other, &req).status, 200);
    let out = srv.cli(Some(&agent), &["exec", "--", "/usr/bin/true"]);
    out.expect_denied("authority_unavailable", "writ exec over its rate");
    assert!(metric(&srv, "writ_rate_limited_total") >= 2.0);
    // The budget comes back at the rate.
    wait_for("the budget to refill", Duration::from_secs(3), || {
        srv.authorize(&agent, &req).status == 200
    });
}

/// The server's resident memory (KiB).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// One anonymous read of the log used to return every leaf asked for, with
/// its context (230 MB for 400 requests of 240 KB), and to hold it all in
/// memory: six in parallel, 2.4 GB. Contexts are now beside the log, and a
/// page of leaves or of contents stops at 4 MiB (or one entry), read from
/// the store a few entries at a time; the pages still chain to the end.
#[test]
fn a_page_of_the_log_is_at_most_four_mib_and_reading_it_does_not_balloon_memory() {
    let srv = Server::start();
    // What a writ binds is at most 8 KiB; what the policy saw (the context,
    // kept beside the log) can be 240 KB a request.
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["context"] = json!({"note": "n".repeat(240_000)});
    // 120 of them: 29 MB of contents, which read whole six times at once
    // (and encoded) would take hundreds of MB.
    for _ in 0..120 {
        let r = srv.authorize(&srv.admin_token, &req);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let size = srv.public_log_entries().len();
    let rss_before = rss_kib(srv.pid());
    let pages: Vec<_> = (0..6)
        .map(|_| {
            let (addr, token) = (srv.addr.clone(), srv.admin_token.clone());
            std::thread::spawn(move || {
                let auth = format!("Bearer {token}");
                let e = http(&addr, "GET", "/v1/log/entries?start=0", &[], b"");
                let c = http(
                    &addr,
                    "GET",
                    "/v1/log/contents?start=0",
                    &[("authorization", &auth)],
                    b"",
                );
                (e, c)
            })
        })
        .collect();
    for p in pages {
        let (e, c) = p.join().unwrap();
        assert_eq!((e.status, c.status), (200, 200));
        for (what, body) in [("entries", &e.body), ("contents", &c.body)] {
            // 4 MiB, plus at most the one entry that crossed it.
            assert!(
                body.len() < 4 * 1024 * 1024 + 700 * 1024,
                "{what}: {} bytes",
                body.len()
            );
        }
        // The leaves are small (what was asked is beside them); the
        // contents are not, and take several pages.
        assert_eq!(e.json().as_array().unwrap().len(), size);
        let next = c.json()["next"].as_u64().unwrap();
        assert!((next as usize) < size, "{next}");
    }
    let grew_mib = rss_kib(srv.pid()).saturating_sub(rss_before) / 1024;
    assert!(
        grew_mib < 100,
        "six page reads grew the server by {grew_mib} MiB"
    );
    // Page by page, every entry is there.
    assert_eq!(srv.log_entries().len(), size);
}

/// An event stream holds its connection for as long as it is open: any
/// principal (or a governed program's credential) used to be able to hold
/// every connection with them. A principal holds at most a quarter of the
/// connection limit in streams (at least 16).
#[test]
fn a_principal_holds_a_bounded_number_of_event_streams() {
    let srv = Server::start_with(&["--max-connections", "64"]);
    let greedy = srv.add_principal("Agent::\"greedy\"");
    let other = srv.add_principal("Agent::\"other\"");
    let open = |token: &str| -> (TcpStream, String) {
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        write!(
            s,
            "GET /v1/revocations/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = vec![0u8; 256];
        let n = s.read(&mut head).unwrap();
        (s, String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let mut held = Vec::new();
    for _ in 0..16 {
        let (s, head) = open(&greedy);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    let (_, head) = open(&greedy);
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.contains("too_many_streams") || head.contains("429"),
        "{head}"
    );
    // Another principal is not affected; a closed stream frees its place.
    let (_s, head) = open(&other);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(held.pop());
    wait_for("a stream place", Duration::from_secs(5), || {
        open(&greedy).1.starts_with("HTTP/1.1 200")
    });
}
