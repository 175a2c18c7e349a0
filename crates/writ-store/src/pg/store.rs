//! The shared store: connecting (and migrating), its runtime, and running
//! reads on it from any thread.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Client, Row};
use writ_log::merkle::{NodeReader, ProofError};

use super::conn::{block_on, Dial, Pool, CONNECT_TIMEOUT, READ_TIMEOUT};
use super::listen::listener;
use super::schema::migrate;
use super::sql::{pg_unavailable, query, unavailable, Param};
use super::tree::{fetch_nodes, Fetched, Recording};
use super::writer::{writer, Job, QUEUE_TX_MAX};
use crate::roles::{LogRead, Mesh, Store, Submit};
use crate::types::*;

/// The shared PostgreSQL store.
pub struct PgStore {
    pub(super) pool: Arc<Pool>,
    queue: mpsc::Sender<Job>,
    pub(super) changes: watch::Receiver<u64>,
    pub(super) leader: Arc<tokio::sync::Mutex<Option<Client>>>,
    /// The runtime running the writer, the listener and every query; shut
    /// down in the background on drop (so dropping from async code is fine).
    pub(super) rt: Option<tokio::runtime::Runtime>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user@host:port/db`),
    /// apply any schema migrations not yet applied, and start the writer.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        // libpq's `sslmode` and `sslrootcert`, which tokio-postgres does not
        // read in full, are taken out and applied here.
        let (url, tls) = crate::pgtls::from_url(url)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Unavailable(format!(
                "bad PostgreSQL URL (postgres://user@host:port/db): {e}"
            ))
        })?;
        config.application_name("writ");
        config.connect_timeout(CONNECT_TIMEOUT);
        config.ssl_mode(tls.mode);
        let dial = Dial {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls.config),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("writ-pg")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let pool = Arc::new(Pool {
            dial: dial.clone(),
            idle: Mutex::new(Vec::new()),
        });
        let migrate_pool = pool.clone();
        let first = block_on(&rt, async move {
            let mut c = migrate_pool.get().await?;
            migrate(&mut c).await?;
            migrate_pool.put(c);
            Ok(())
        });
        if let Err(e) = first {
            // A runtime dropped from async code panics (the caller may be
            // on one): shut it down in the background, and report the cause.
            rt.shutdown_background();
            return Err(e);
        }
        let (queue, rx) = mpsc::channel::<Job>(QUEUE_TX_MAX);
        rt.spawn(writer(dial.clone(), rx));
        let (changes_tx, changes) = watch::channel(0u64);
        rt.spawn(listener(dial, changes_tx));
        Ok(PgStore {
            pool,
            queue,
            changes,
            leader: Arc::new(tokio::sync::Mutex::new(None)),
            rt: Some(rt),
        })
    }

    /// Run `f` on the store's runtime with a pooled connection and wait.
    pub(super) fn read<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = (Client, Result<T, StoreError>)> + Send + 'static,
    {
        let Some(rt) = &self.rt else {
            return Err(unavailable("the store is shut down"));
        };
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let out = match pool.get().await {
                Ok(c) => {
                    let (c, out) = f(c).await;
                    pool.put(c);
                    out
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(out);
        });
        rx.recv_timeout(READ_TIMEOUT)
            .map_err(|_| unavailable("postgres: no answer within the read timeout"))?
    }

    /// One query's rows.
    pub(super) fn rows(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<Row>, StoreError> {
        self.read(move |c| async move {
            let out = query(&c, sql, &params).await.map_err(pg_unavailable);
            (c, out)
        })
    }

    /// Run a Merkle computation over the stored tree of `size` in two passes:
    /// the first learns which nodes it reads (the shape does not depend on
    /// the hashes), one query fetches them, the second computes.
    pub(super) fn with_tree<T>(
        &self,
        size: u64,
        f: impl Fn(&dyn NodeReader) -> Result<T, ProofError>,
    ) -> Result<T, ProofError> {
        let log_size = self
            .log_size()
            .map_err(|e| ProofError::Unavailable(e.to_string()))?;
        if size > log_size {
            return Err(ProofError::BeyondLog { size, log_size });
        }
        let wanted = Recording::default();
        // The first pass's result is made of placeholder hashes; only the
        // reads matter.
        let _ = f(&wanted);
        let keys = wanted.0.into_inner().unwrap_or_default();
        let nodes = self
            .fetch_nodes(keys)
            .map_err(|e| ProofError::Unavailable(e.to_string()))?;
        f(&nodes)
    }

    fn fetch_nodes(&self, keys: Vec<(u8, u64)>) -> Result<Fetched, StoreError> {
        self.read(move |c| async move {
            let out = fetch_nodes(&c, &keys).await;
            (c, out)
        })
    }
}

impl Submit for PgStore {
    fn submit(&self, tx: Tx) -> Ticket {
        let (reply, rx) = oneshot::channel();
        match self.queue.try_send((tx, reply)) {
            Ok(()) => Ticket::pending(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Ticket::ready(Err(StoreError::Unavailable(
                format!("more than {QUEUE_TX_MAX} transactions are waiting for the database"),
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => Ticket::ready(Err(
                StoreError::Unavailable("the store's writer has stopped".into()),
            )),
        }
    }
}

/// Other nodes write this store too.
impl Store for PgStore {
    fn mesh(&self) -> Option<&dyn Mesh> {
        Some(self)
    }
}
