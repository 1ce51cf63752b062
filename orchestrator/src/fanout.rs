//! One history read per file change, however many SSE streams watch the file. Every stream
//! used to query Postgres on every projection commit (any file's): a thousand idle streams made
//! a thousand queries per commit. Now one task per process reads, after each commit (or each
//! `http.sse_poll_ms`), the new history rows of every file that has a stream open — one query
//! for all of them — and hands each row to that file's streams through a bounded broadcast.
//!
//! A stream reads the database itself only to catch up: when it opens (its `Last-Event-ID`
//! backlog) and when it fell more than [`CHANNEL`] rows behind the broadcast.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roar_common::metrics::SSE_HISTORY_READS;
use roar_projections::store::HistoryRow;
use roar_projections::ReadModel;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::notifier::{self, Notifier};

/// Rows one file's broadcast holds for a slow stream before that stream must catch up.
const CHANNEL: usize = 256;
/// Most rows one read hands out; a longer change is read in several.
const PAGE: i64 = 1000;

struct Watched {
    tx: broadcast::Sender<Arc<HistoryRow>>,
    /// The last row handed out (or, before any, the last row when the first stream subscribed).
    after: i64,
}

/// The files with open streams and where each one's broadcast stands.
#[derive(Clone, Default)]
pub(crate) struct Fanout(Arc<Mutex<HashMap<String, Watched>>>);

impl Fanout {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to `file_id`'s new rows: every row after the file's last one at this moment
    /// (read once for a file no stream watched yet) arrives on the receiver.
    pub(crate) async fn subscribe(
        &self,
        read: &ReadModel,
        file_id: &str,
    ) -> Result<broadcast::Receiver<Arc<HistoryRow>>, sqlx::Error> {
        if let Some(w) = self.lock().get(file_id) {
            return Ok(w.tx.subscribe());
        }
        metrics::counter!(SSE_HISTORY_READS, "kind" => "subscribe").increment(1);
        let after = read.last_seq(file_id).await?;
        let mut files = self.lock();
        // Another stream of the file may have subscribed meanwhile: join its broadcast.
        let w = files.entry(file_id.to_string()).or_insert_with(|| Watched {
            tx: broadcast::channel(CHANNEL).0,
            after,
        });
        Ok(w.tx.subscribe())
    }

    /// Reads the new rows of every watched file (one query) and hands them out; forgets files
    /// whose streams have all closed.
    async fn pump(&self, read: &ReadModel) -> Result<(), sqlx::Error> {
        loop {
            let cursors: Vec<(String, i64)> = {
                let mut files = self.lock();
                files.retain(|_, w| w.tx.receiver_count() > 0);
                files.iter().map(|(f, w)| (f.clone(), w.after)).collect()
            };
            if cursors.is_empty() {
                return Ok(());
            }
            metrics::counter!(SSE_HISTORY_READS, "kind" => "fanout").increment(1);
            let rows = read.history_after_each(&cursors, PAGE).await?;
            // A file deleted meanwhile: dropping its sender ends its streams (after the rows
            // read above), instead of leaving them open on a file that is gone.
            let ids: Vec<String> = cursors.iter().map(|(f, _)| f.clone()).collect();
            let present = read.files_present(&ids).await?;
            if present.len() < ids.len() {
                // Only files checked now: one subscribed meanwhile was not asked about.
                self.lock()
                    .retain(|f, _| !ids.contains(f) || present.contains(f));
            }
            let full = rows.len() as i64 >= PAGE;
            let mut files = self.lock();
            for (file_id, row) in rows {
                if let Some(w) = files.get_mut(&file_id) {
                    if row.seq > w.after {
                        w.after = row.seq;
                        // No receiver left: nothing to hand out (pruned next round).
                        let _ = w.tx.send(Arc::new(row));
                    }
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Pumps after every projection commit (and every `poll`) until `cancel` fires.
    pub(crate) fn spawn(
        &self,
        read: ReadModel,
        notifier: &Notifier,
        poll: Duration,
        cancel: CancellationToken,
    ) {
        let fanout = self.clone();
        let mut rx = notifier.subscribe();
        tokio::spawn(async move {
            loop {
                rx.borrow_and_update();
                if let Err(e) = fanout.pump(&read).await {
                    tracing::warn!(error = %e, "event stream read failed; retried next commit");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = notifier::wait(&mut rx, poll) => {}
                }
            }
        });
    }
}
