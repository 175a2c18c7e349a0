//! Following other nodes' changes: `LISTEN writ_state`.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::conn::Dial;

/// Channel notified when a commit changed state the authority caches.
pub(super) const STATE_CHANNEL: &str = "writ_state";

/// Follow `NOTIFY writ_state` on a connection of its own, reconnecting when
/// it drops; each notification (and each reconnection, which may have missed
/// some) bumps the watch.
pub(super) async fn listener(dial: Dial, changes: watch::Sender<u64>) {
    let mut bumps: u64 = 0;
    loop {
        match dial.config.connect(dial.tls.clone()).await {
            Ok((client, mut conn)) => {
                let (note_tx, mut note_rx) = mpsc::unbounded_channel::<()>();
                let driver = tokio::spawn(async move {
                    let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    use futures_util::StreamExt;
                    while let Some(m) = stream.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(_)) => {
                                if note_tx.send(()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {STATE_CHANNEL}"))
                    .await
                    .is_ok()
                {
                    bumps += 1;
                    let _ = changes.send(bumps);
                    while note_rx.recv().await.is_some() {
                        bumps += 1;
                        if changes.send(bumps).is_err() {
                            driver.abort();
                            return;
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "cannot reach postgres to listen"),
        }
        if changes.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
