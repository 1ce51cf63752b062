//! Wakes waiters when the projection commits: one Postgres `LISTEN` per orchestrator process
//! feeds a watch channel that every SSE stream and `?after=` wait subscribes to. Waiters also
//! poll on a timer, so a lost connection or notification only delays them. The `/status`
//! cache relies on seeing every commit, so it asks [`Notifier::generation`], which answers only
//! while the connection is up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roar_projections::ReadModel;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Counts projection commits seen by this process.
#[derive(Clone)]
pub struct Notifier {
    tx: Arc<watch::Sender<u64>>,
    /// Whether the `LISTEN` connection is up (set after the catch-up wake on connecting,
    /// cleared as soon as the connection fails).
    listening: Arc<AtomicBool>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(0).0),
            listening: Arc::default(),
        }
    }
}

impl Notifier {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// The count of commits seen, while every commit is being seen; `None` while the `LISTEN`
    /// connection is down (commits may then pass unseen).
    pub fn generation(&self) -> Option<u64> {
        self.listening
            .load(Ordering::Acquire)
            .then(|| *self.tx.borrow())
    }

    /// A commit seen, for tests of what follows the count.
    #[cfg(test)]
    pub(crate) fn commit_for_test(&self) {
        self.tx.send_modify(|n| *n += 1);
    }

    /// The connection up or down, for tests.
    #[cfg(test)]
    pub(crate) fn listening_for_test(&self, up: bool) {
        self.listening.store(up, Ordering::Release);
    }

    /// Listens on the projection's channel until `cancel` fires, reconnecting on errors.
    pub fn spawn(&self, read: ReadModel, cancel: CancellationToken) {
        let (tx, listening) = (self.tx.clone(), self.listening.clone());
        tokio::spawn(async move {
            loop {
                let res = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = listen(&read, &tx, &listening) => r,
                };
                listening.store(false, Ordering::Release);
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

async fn listen(
    read: &ReadModel,
    tx: &watch::Sender<u64>,
    listening: &AtomicBool,
) -> Result<(), sqlx::Error> {
    let mut commits = read.listen().await?;
    // Anything committed while we were not listening: wake everyone once (and start a new
    // generation before saying we listen, so nothing cached before counts as current).
    tx.send_modify(|n| *n += 1);
    listening.store(true, Ordering::Release);
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
