//! Connections to PostgreSQL: how to dial, the pool of idle read
//! connections, and waiting for the store's runtime from any thread.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::Client;

use super::sql::{pg_unavailable, unavailable};
use crate::types::StoreError;

/// How long a read waits for the database.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection attempt may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle read connections kept.
const READERS_MAX: usize = 8;

pub(super) struct Pool {
    pub(super) dial: Dial,
    pub(super) idle: Mutex<Vec<Client>>,
}

/// How to open a connection: the parsed URL and its TLS (`pgtls.rs`).
#[derive(Clone)]
pub(super) struct Dial {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Pool {
    pub(super) async fn get(&self) -> Result<Client, StoreError> {
        loop {
            let c = self.idle.lock().ok().and_then(|mut v| v.pop());
            match c {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => continue,
                None => return connect(&self.dial).await,
            }
        }
    }

    pub(super) fn put(&self, c: Client) {
        if c.is_closed() {
            return;
        }
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < READERS_MAX {
                v.push(c);
            }
        }
    }
}

pub(super) async fn connect(dial: &Dial) -> Result<Client, StoreError> {
    let (client, conn) =
        tokio::time::timeout(CONNECT_TIMEOUT, dial.config.connect(dial.tls.clone()))
            .await
            .map_err(|_| unavailable("postgres: connecting timed out"))?
            .map_err(pg_unavailable)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

pub(super) fn block_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv_timeout(READ_TIMEOUT * 2)
        .map_err(|_| unavailable("postgres: no answer in time"))?
}
