//! `writ mcp-proxy --listen` told to stop while a session is being opened:
//! a real `writ serve` behind a relay that holds the session's authorize,
//! the TypeScript SDK's Streamable HTTP server as the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use crate::mcp_http::{finished, free_port, front_on, initialize, sessions, setup, Upstream};

/// A relay to `to` that holds each chunk it is sent for `hold` once it has
/// seen `POST /v1/authorize`, and keeps its side to `to` open a while after
/// its client is gone; `seen` is set when that request arrives.
fn holding_relay(to: u16, hold: Duration, seen: Arc<Mutex<bool>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for inbound in l.incoming() {
            let Ok(mut inbound) = inbound else { return };
            let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (mut back_from, mut back_to) =
                (outbound.try_clone().unwrap(), inbound.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut back_from, &mut back_to));
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = inbound.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if buf[..n].windows(17).any(|w| w == b"POST /v1/authoriz") {
                        *seen.lock().unwrap() = true;
                        std::thread::sleep(hold);
                    }
                    if outbound.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_secs(3));
            });
        }
    });
    port
}

/// A session still being opened when the proxy is told to stop is a
/// started writ at the authority: the proxy waits for the opening, then
/// ends that session with the rest, so its writ gets its finish.
#[test]
fn a_session_being_opened_at_sigterm_is_finished() {
    let (srv, agent, dir) = setup();
    let up = Upstream::start(dir.path(), None);
    let seen = Arc::new(Mutex::new(false));
    let authority = srv.url.rsplit(':').next().unwrap().parse().unwrap();
    let relay = holding_relay(authority, Duration::from_millis(1500), Arc::clone(&seen));
    let (mut p, addr) = front_on(
        &format!("http://127.0.0.1:{relay}"),
        dir.path(),
        &up.url(),
        free_port(),
        &[],
    );
    let (a, bearer) = (addr.clone(), format!("Bearer {agent}"));
    let opener = std::thread::spawn(move || {
        try_http(
            &a,
            "POST",
            "/mcp",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
            ],
            initialize().to_string().as_bytes(),
        )
        .map(|r| r.status)
    });
    wait_for(
        "the session's authorize on its way",
        Duration::from_secs(15),
        || *seen.lock().unwrap(),
    );
    let pid = p.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("the proxy's exit", Duration::from_secs(30), || {
        p.0.try_wait().unwrap().is_some()
    });
    let _ = opener.join();
    wait_for("the session's decision", Duration::from_secs(10), || {
        sessions(&srv).len() == 1
    });
    let jti = sessions(&srv)[0]["jti"].as_str().unwrap().to_owned();
    wait_for("the session's finish", Duration::from_secs(10), || {
        finished(&srv, &jti)
    });
}
