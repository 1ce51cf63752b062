//! Following `roar.control.v1`: every processor and orchestrator instance reads the whole topic
//! itself (no consumer group shares it), so a cancel reaches whichever worker runs the job and
//! every orchestrator knows which workers are alive. Nothing here stores offsets: a restart
//! re-reads the topic from the beginning (it is small and has a short retention), which also
//! catches a cancel that was sent before the job reached a worker.
//!
//! A cancel with an empty job id stands for every job of its file requested up to it: one
//! event for a deleted song, however many jobs it had (`DELETE /songs/{file_id}`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use roar_schemas::topics::CONTROL;
use roar_schemas::{ControlBody, ControlEvent};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{consumer_config, KafkaError};
use crate::config::KafkaConfig;

/// Canceled job ids (and canceled songs) remembered; older ones are forgotten first (bounded
/// memory).
const MAX_CANCELED: usize = 100_000;

/// A worker as its last announcement described it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveWorker {
    pub worker: String,
    pub model: String,
    pub model_version: String,
    pub variations: Vec<String>,
    /// The version each of `variations` is served at (same order); empty from a worker that
    /// predates served versions.
    pub versions: Vec<String>,
    pub device: String,
    pub last_seen: DateTime<Utc>,
    /// When the worker promised to announce itself again by.
    pub expires_at: DateTime<Utc>,
}

impl LiveWorker {
    /// Whether this worker runs `model`'s jobs for `variation` at `version`. A worker that
    /// announces no versions (an older build) runs its variations at any version.
    pub fn serves(&self, model: &str, variation: &str, version: &str) -> bool {
        if self.model != model {
            return false;
        }
        if self.versions.is_empty() {
            return self.variations.iter().any(|v| v == variation);
        }
        self.variations
            .iter()
            .zip(&self.versions)
            .any(|(v, ver)| v == variation && ver == version)
    }
}

/// When cancels were asked for, by key (a job id, or a song's file id), the oldest forgotten
/// first.
#[derive(Default)]
struct Canceled {
    at: HashMap<String, DateTime<Utc>>,
    order: VecDeque<String>,
}

impl Canceled {
    /// Records a cancel at `at`; a later one for the same key moves its time forward.
    fn insert(&mut self, key: &str, at: DateTime<Utc>) {
        match self.at.get_mut(key) {
            Some(t) => *t = (*t).max(at),
            None => {
                self.at.insert(key.to_string(), at);
                self.order.push_back(key.to_string());
                while self.order.len() > MAX_CANCELED {
                    if let Some(old) = self.order.pop_front() {
                        self.at.remove(&old);
                    }
                }
            }
        }
    }

    /// Whether a cancel for `key` came at or after `requested_at`.
    fn covers(&self, key: &str, requested_at: DateTime<Utc>) -> bool {
        self.at.get(key).is_some_and(|at| *at >= requested_at)
    }
}

/// A job running in this process.
struct Running {
    file_id: String,
    requested_at: DateTime<Utc>,
    flag: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    jobs: Canceled,
    /// Songs whose every job requested up to the cancel is canceled, by file id.
    songs: Canceled,
    running: HashMap<String, Running>,
    workers: HashMap<String, LiveWorker>,
}

impl State {
    fn canceled(&self, job_id: &str, file_id: &str, requested_at: DateTime<Utc>) -> bool {
        self.jobs.covers(job_id, requested_at) || self.songs.covers(file_id, requested_at)
    }
}

/// What the control topic has said so far.
#[derive(Default)]
pub struct ControlFollower {
    state: Mutex<State>,
    caught_up: AtomicBool,
}

/// Removes a running job's stop flag when the job ends.
pub struct RunningGuard {
    follower: Arc<ControlFollower>,
    job_id: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.follower.lock().running.remove(&self.job_id);
    }
}

impl ControlFollower {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps inconsistent: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts following the topic in the background until `cancel` fires.
    pub fn spawn(kafka: &KafkaConfig, cancel: CancellationToken) -> Result<Arc<Self>, KafkaError> {
        let consumer: StreamConsumer = consumer_config(kafka)
            .set("group.id", format!("roar-control-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let me = Arc::new(Self::default());
        let follower = me.clone();
        tokio::spawn(async move {
            if let Err(e) = follower.follow(consumer, cancel).await {
                tracing::error!(error = %e, "control topic follower stopped");
            }
        });
        Ok(me)
    }

    async fn follow(
        &self,
        consumer: StreamConsumer,
        cancel: CancellationToken,
    ) -> Result<(), KafkaError> {
        // Metadata, assignment and watermarks block on the network: off the executor, where a
        // slow broker would stall every task of the process (and deadlock one that forwards the
        // broker's own traffic).
        let consumer = Arc::new(consumer);
        let setup = consumer.clone();
        let stop = cancel.clone();
        let assigned = tokio::task::spawn_blocking(move || assign_all(&setup, &stop))
            .await
            .map_err(|e| KafkaError::Read {
                topic: CONTROL.into(),
                reason: format!("assignment task: {e}"),
            })??;
        let Some(end) = assigned else {
            return Ok(());
        };
        let mut seen: HashMap<i32, i64> = HashMap::new();
        if end.iter().all(|&(_, h)| h <= 0) {
            self.caught_up.store(true, Ordering::Release);
        }
        loop {
            let m = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                m = consumer.recv() => m,
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "control topic read failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            seen.insert(m.partition(), m.offset() + 1);
            match m.payload().map(roar_schemas::decode::<ControlEvent>) {
                Some(Ok(ev)) => self.apply(ev),
                // Nobody owns this topic's DLQ duty: a bad control message is only logged.
                Some(Err(e)) => {
                    tracing::warn!(offset = m.offset(), error = %e, "undecodable control message skipped")
                }
                None => {}
            }
            if !self.caught_up.load(Ordering::Relaxed)
                && end
                    .iter()
                    .all(|(p, h)| seen.get(p).copied().unwrap_or(0) >= *h)
            {
                self.caught_up.store(true, Ordering::Release);
            }
        }
    }

    /// Applies one control event (also usable without a broker).
    pub fn apply(&self, ev: ControlEvent) {
        let mut s = self.lock();
        match ev.body {
            ControlBody::CancelRequested { file_id, .. } if ev.job_id.is_empty() => {
                let at = ev.meta.occurred_at;
                for r in s.running.values() {
                    if r.file_id == file_id && r.requested_at <= at {
                        r.flag.store(true, Ordering::Relaxed);
                    }
                }
                s.songs.insert(&file_id, at);
            }
            ControlBody::CancelRequested { .. } => {
                if let Some(r) = s.running.get(&ev.job_id) {
                    r.flag.store(true, Ordering::Relaxed);
                }
                s.jobs.insert(&ev.job_id, ev.meta.occurred_at);
            }
            ControlBody::WorkerAlive {
                worker,
                model,
                model_version,
                variations,
                device,
                interval_seconds,
                stopping,
                versions,
            } => {
                if stopping {
                    s.workers.remove(&worker);
                    return;
                }
                let last_seen = ev.meta.occurred_at;
                // Two missed announcements and the worker counts as gone.
                let expires_at =
                    last_seen + chrono::Duration::seconds(2 * i64::from(interval_seconds.max(1)));
                s.workers.insert(
                    worker.clone(),
                    LiveWorker {
                        worker,
                        model,
                        model_version,
                        variations,
                        versions,
                        device,
                        last_seen,
                        expires_at,
                    },
                );
            }
        }
    }

    /// Whether the topic has been read up to where it was when following began.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Whether a cancel for `job_id`, or for every job of its song `file_id`, was asked for at
    /// or after `requested_at`: a request made after a cancel (a retry, a new life of a song
    /// uploaded again) runs.
    pub fn is_canceled(&self, job_id: &str, file_id: &str, requested_at: DateTime<Utc>) -> bool {
        self.lock().canceled(job_id, file_id, requested_at)
    }

    /// Whether every job of `file_id` requested at `requested_at` was canceled at once (its
    /// song was deleted).
    pub fn is_song_canceled(&self, file_id: &str, requested_at: DateTime<Utc>) -> bool {
        self.lock().songs.covers(file_id, requested_at)
    }

    /// Registers a running job of `file_id`; its flag is raised when a cancel for it or its
    /// song arrives (or already had, for the request made at `requested_at`). The
    /// registration ends when the guard drops.
    pub fn register(
        self: &Arc<Self>,
        job_id: &str,
        file_id: &str,
        requested_at: DateTime<Utc>,
        flag: Arc<AtomicBool>,
    ) -> RunningGuard {
        let mut s = self.lock();
        if s.canceled(job_id, file_id, requested_at) {
            flag.store(true, Ordering::Relaxed);
        }
        let running = Running {
            file_id: file_id.to_string(),
            requested_at,
            flag,
        };
        s.running.insert(job_id.to_string(), running);
        RunningGuard {
            follower: self.clone(),
            job_id: job_id.to_string(),
        }
    }

    /// Workers whose announcement has not expired at `now`.
    pub fn live_workers(&self, now: DateTime<Utc>) -> Vec<LiveWorker> {
        let mut v: Vec<LiveWorker> = self
            .lock()
            .workers
            .values()
            .filter(|w| w.expires_at > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.model, &a.worker).cmp(&(&b.model, &b.worker)));
        v
    }
}

/// Assigns every partition of the control topic from the beginning (no group membership, no
/// rebalances), once the topic has partitions, and returns each partition's high watermark at
/// that moment; `None` when `cancel` fires first. Blocking.
fn assign_all(
    consumer: &StreamConsumer,
    cancel: &CancellationToken,
) -> Result<Option<Vec<(i32, i64)>>, KafkaError> {
    let partitions = loop {
        let md = consumer.fetch_metadata(Some(CONTROL), Duration::from_secs(5));
        match md
            .ok()
            .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
        {
            Some(n) if n > 0 => break n,
            _ if cancel.is_cancelled() => return Ok(None),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(CONTROL, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(Some(
        (0..partitions as i32)
            .map(|p| {
                let h = consumer
                    .fetch_watermarks(CONTROL, p, Duration::from_secs(5))
                    .map(|(_, h)| h)
                    .unwrap_or(0);
                (p, h)
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use roar_schemas::EventMeta;

    fn cancel(job: &str) -> ControlEvent {
        ControlEvent {
            meta: EventMeta::new("r", "u"),
            job_id: job.into(),
            body: ControlBody::CancelRequested {
                file_id: "f".into(),
                reason: "user".into(),
            },
        }
    }

    fn alive(worker: &str, stopping: bool) -> ControlEvent {
        ControlEvent {
            meta: EventMeta::new("r", "w"),
            job_id: String::new(),
            body: ControlBody::WorkerAlive {
                worker: worker.into(),
                model: "pitch".into(),
                model_version: "v".into(),
                variations: vec!["tiny".into()],
                device: "cpu".into(),
                interval_seconds: 10,
                stopping,
                versions: vec!["v-tiny".into()],
            },
        }
    }

    #[test]
    fn cancel_raises_the_flag_of_a_running_job_and_of_one_that_starts_later() {
        let f = Arc::new(ControlFollower::default());
        let before = Utc::now() - chrono::Duration::seconds(5);
        let running = Arc::new(AtomicBool::new(false));
        let _g = f.register("j1", "f", before, running.clone());
        f.apply(cancel("j1"));
        assert!(running.load(Ordering::Relaxed));

        f.apply(cancel("j2"));
        let later = Arc::new(AtomicBool::new(false));
        let g2 = f.register("j2", "f", before, later.clone());
        assert!(later.load(Ordering::Relaxed));
        drop(g2);
        assert!(!f.lock().running.contains_key("j2"));
        assert!(f.is_canceled("j2", "f", before));
        assert!(!f.is_canceled("j3", "f", before));

        // A retry requested after the cancel is not canceled by it.
        let retry_at = Utc::now() + chrono::Duration::seconds(5);
        assert!(!f.is_canceled("j2", "f", retry_at));
        let retry = Arc::new(AtomicBool::new(false));
        let _g3 = f.register("j2", "f", retry_at, retry.clone());
        assert!(!retry.load(Ordering::Relaxed));
    }

    fn song_cancel(file: &str) -> ControlEvent {
        ControlEvent::song_cancel(EventMeta::new("r", "u"), file, "song deleted")
    }

    #[test]
    fn a_song_cancel_stops_every_job_of_the_song_requested_before_it_and_no_other() {
        let f = Arc::new(ControlFollower::default());
        let before = Utc::now() - chrono::Duration::seconds(5);
        let (mine, other) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let _g1 = f.register("j1", "f1", before, mine.clone());
        let _g2 = f.register("j2", "f2", before, other.clone());
        let cancel = song_cancel("f1");
        let at = cancel.meta.occurred_at;
        let redelivered = cancel.clone();
        f.apply(cancel);
        assert!(mine.load(Ordering::Relaxed), "the song's running job stops");
        assert!(!other.load(Ordering::Relaxed), "another song's job runs on");
        // Queued jobs of the song (any id) do not start; the job ids were never named.
        assert!(f.is_canceled("j9", "f1", before) && f.is_song_canceled("f1", at));
        assert!(!f.is_canceled("j9", "f2", before) && !f.is_song_canceled("f2", before));
        // A job requested after the cancel (the song uploaded again: the same id) runs.
        let later = at + chrono::Duration::seconds(1);
        assert!(!f.is_canceled("j1", "f1", later));
        let fresh = Arc::new(AtomicBool::new(false));
        let _g3 = f.register("j3", "f1", later, fresh.clone());
        assert!(!fresh.load(Ordering::Relaxed));
        // Read again (a redelivery, a restart re-reading the topic): nothing changes.
        f.apply(redelivered);
        assert!(!fresh.load(Ordering::Relaxed) && !f.is_song_canceled("f1", later));
        assert!(f.is_canceled("j9", "f1", before));
    }

    #[test]
    fn workers_expire_and_leave_on_stopping() {
        let f = ControlFollower::default();
        f.apply(alive("a", false));
        f.apply(alive("b", false));
        let now = Utc::now();
        assert_eq!(f.live_workers(now).len(), 2);
        assert!(f
            .live_workers(now + chrono::Duration::seconds(21))
            .is_empty());
        f.apply(alive("a", true));
        let live = f.live_workers(now);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].worker, "b");
        assert!(live[0].serves("pitch", "tiny", "v-tiny"));
        assert!(!live[0].serves("pitch", "tiny", "v-other"));
        assert!(!live[0].serves("pitch", "full", "v-tiny"));
        assert!(!live[0].serves("whisper", "tiny", "v-tiny"));
        // An older worker's announcement names no versions: its variations at any version.
        let old = LiveWorker {
            versions: vec![],
            ..live[0].clone()
        };
        assert!(old.serves("pitch", "tiny", "v-other") && !old.serves("pitch", "full", "v"));
    }
}
