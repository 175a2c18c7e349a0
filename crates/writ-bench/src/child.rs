//! `writ serve` as a child process, for the benchmarks that measure the
//! server as it runs in production (its own process, its RSS).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use writ_gate::client::Client;

/// `writ serve` on a data dir, as a child on a free loopback port; killed
/// when dropped (on every way out, errors included).
pub(crate) struct ServeChild {
    child: std::process::Child,
    pub url: String,
}

impl ServeChild {
    /// Start it and wait until `/readyz` answers 200.
    pub async fn start(dir: &Path) -> Result<ServeChild> {
        ServeChild::start_with(dir, &[]).await
    }

    /// [`ServeChild::start`] with more `writ serve` arguments.
    pub async fn start_with(dir: &Path, extra: &[&str]) -> Result<ServeChild> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("--dir")
            .arg(dir)
            .args([
                "serve",
                "--rate-limit",
                "0",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting writ serve")?;
        let mut me = ServeChild { child, url };
        let probe = Client::new(&me.url, None);
        let t0 = Instant::now();
        loop {
            if let Ok(r) = probe.get("/readyz").await {
                if r.status == 200 {
                    return Ok(me);
                }
            }
            if let Some(status) = me.child.try_wait()? {
                bail!("writ serve exited during start-up: {status}");
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(600),
                "writ serve not ready after 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
