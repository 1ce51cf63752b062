//! Wakes waiters when the projection commits: one Postgres `LISTEN` per orchestrator process
//! feeds a watch channel that every SSE stream and `?after=` wait subscribes to. Waiters also
//! poll on a timer, so a lost connection or notification only delays them.

use std::sync::Arc;
use std::time::Duration;

use roar_projections::ReadModel;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Counts projection commits seen by this process.
#[derive(Clone)]
pub struct Notifier {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(0).0),
        }
    }
}

impl Notifier {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Listens on the projection's channel until `cancel` fires, reconnecting on errors.
    pub fn spawn(&self, read: ReadModel, cancel: CancellationToken) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                let res = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = listen(&read, &tx) => r,
                };
                if let Err(e) = res {
                    tracing::warn!(error = %e, "projection notifications lost; reconnecting");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

async fn listen(read: &ReadModel, tx: &watch::Sender<u64>) -> Result<(), sqlx::Error> {
    let mut commits = read.listen().await?;
    // Anything committed while we were not listening: wake everyone once.
    tx.send_modify(|n| *n += 1);
    loop {
        commits.next().await?;
        tx.send_modify(|n| *n += 1);
    }
}

/// Waits for the next commit notification or `poll`, whichever comes first.
pub async fn wait(rx: &mut watch::Receiver<u64>, poll: Duration) {
    tokio::select! {
        r = rx.changed() => { if r.is_err() { tokio::time::sleep(poll).await } }
        _ = tokio::time::sleep(poll) => {}
    }
}
