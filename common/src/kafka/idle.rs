//! Cheap idling for consumers: pause an idle member's partitions, resume them when this
//! process produces to one of its topics.
//!
//! A consumer with a short `fetch.wait.max.ms` sends a fetch every few milliseconds even when
//! nothing happens, and a broker that holds each fetch for its whole wait instead of answering
//! when data arrives (tansu, `roar dev`'s broker) cannot be given a longer wait without delaying
//! every event by it. So a member that has seen no message for `kafka.idle_pause_ms` pauses its
//! assignment: librdkafka then sends no fetches at all. It resumes
//! - at once when this process produces to one of its topics ([`produced`], called by
//!   [`super::EventProducer`] once the broker has the event): in `roar dev` every role is one
//!   process, so an event is as quick to reach an idle member as a busy one;
//! - every `kafka.idle_peek_ms` for a short look, for events another process produced.
//!
//! Pausing never loses or reorders anything: a paused partition keeps its position and the
//! next fetch after the resume starts there.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::KafkaConfig;

/// One counter per topic, bumped by every event this process produces to it.
static PRODUCED: LazyLock<Mutex<HashMap<String, watch::Sender<u64>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn sender(topic: &str) -> watch::Sender<u64> {
    // A panic while holding this lock cannot leave the map inconsistent: keep going.
    let mut map = PRODUCED.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(topic.to_string())
        .or_insert_with(|| watch::channel(0).0)
        .clone()
}

/// Tells this process's idle consumers of `topic` that it has a new event.
pub fn produced(topic: &str) {
    sender(topic).send_modify(|n| *n = n.wrapping_add(1));
}

/// How long a member stays resumed after a look for other processes' events: long enough for
/// librdkafka to send its first fetch after the resume (a few hundred ms measured under load)
/// and for one fetch round trip on a broker that holds each fetch for its whole wait.
fn peek_window(fetch_wait: Duration) -> Duration {
    (fetch_wait * 4).max(Duration::from_millis(500))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Fetching; pauses at the deadline unless a message or a rebalance comes first.
    Active,
    /// Paused; resumes on a wake-up or at the deadline (a peek).
    Paused,
}

/// The idle pause of one consumer. Drive it with [`IdleGate::step`] in the consumer's `select!`
/// beside `recv()`, and tell it of every message ([`IdleGate::busy`]) and rebalance.
pub struct IdleGate {
    /// `None`: never pauses (the knob is 0).
    pause_after: Option<Duration>,
    peek_every: Duration,
    peek_window: Duration,
    woken: Vec<watch::Receiver<u64>>,
    state: State,
    deadline: Instant,
    generation: u64,
}

impl IdleGate {
    /// A gate for a member of `topics` configured by `kafka` (`idle_pause_ms`, `idle_peek_ms`)
    /// whose fetches wait at most `fetch_wait_ms`.
    pub fn new(kafka: &KafkaConfig, topics: &[String], fetch_wait_ms: u64) -> Self {
        let pause_after = match kafka.idle_pause_ms {
            Some(ms) if ms > 0 => Some(Duration::from_millis(ms)),
            _ => None,
        };
        let mut woken: Vec<_> = topics.iter().map(|t| sender(t).subscribe()).collect();
        for w in &mut woken {
            w.mark_unchanged();
        }
        Self {
            pause_after,
            peek_every: Duration::from_millis(kafka.idle_peek_ms),
            peek_window: peek_window(Duration::from_millis(fetch_wait_ms)),
            woken,
            state: State::Active,
            deadline: Instant::now() + pause_after.unwrap_or_default(),
            generation: 0,
        }
    }

    /// A gate that never pauses.
    pub fn disabled() -> Self {
        Self {
            pause_after: None,
            peek_every: Duration::ZERO,
            peek_window: Duration::ZERO,
            woken: Vec::new(),
            state: State::Active,
            deadline: Instant::now(),
            generation: 0,
        }
    }

    /// A message arrived: stay resumed for another `idle_pause_ms`.
    pub fn busy(&mut self) {
        if let Some(after) = self.pause_after {
            self.deadline = Instant::now() + after;
        }
    }

    /// Notes the consumer's rebalance generation: partitions assigned by a rebalance start
    /// unpaused, so a paused gate goes back to active (and pauses them again once idle).
    pub fn rebalanced(&mut self, generation: u64) {
        if generation != self.generation {
            self.generation = generation;
            if self.state == State::Paused {
                self.state = State::Active;
            }
            self.busy();
        }
    }

    /// Waits for the gate's next transition and makes it: pauses the assignment once idle,
    /// resumes it on a wake-up or a peek. Never completes when the gate is disabled. Dropping
    /// it early (a message came first) is safe: it changes nothing until it completes.
    pub async fn step<C: ConsumerContext + 'static>(&mut self, consumer: &StreamConsumer<C>) {
        if self.pause_after.is_none() {
            return std::future::pending().await;
        }
        match self.state {
            State::Active => {
                tokio::time::sleep_until(self.deadline).await;
                if let Ok(assignment) = consumer.assignment() {
                    if assignment.count() > 0 && consumer.pause(&assignment).is_ok() {
                        tracing::trace!("consumer idle; partitions paused");
                        self.state = State::Paused;
                        self.deadline = Instant::now() + self.peek_every;
                        return;
                    }
                }
                // Nothing assigned yet (or the pause failed): look again later.
                self.busy();
            }
            State::Paused => {
                let woken = tokio::select! {
                    _ = tokio::time::sleep_until(self.deadline) => false,
                    _ = changed(&mut self.woken) => true,
                };
                for w in &mut self.woken {
                    w.mark_unchanged();
                }
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.resume(&assignment);
                }
                self.state = State::Active;
                // A wake-up means events are flowing: stay resumed as after a message. A peek
                // only needs one fetch's round trip.
                self.deadline = Instant::now()
                    + if woken {
                        self.pause_after.unwrap_or_default()
                    } else {
                        self.peek_window
                    };
            }
        }
    }
}

/// Completes once any of `rx` has a value it has not seen (never when `rx` is empty).
async fn changed(rx: &mut [watch::Receiver<u64>]) {
    if rx.is_empty() {
        return std::future::pending().await;
    }
    let waits = rx.iter_mut().map(|r| Box::pin(r.changed()));
    // A sender is never dropped (the map keeps it), so an error cannot happen; either way
    // the caller resumes, which is always safe.
    let _ = futures::future::select_all(waits).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_production_wakes_only_the_members_of_its_topic() {
        let mut a = vec![sender("idle-test-a").subscribe()];
        let mut b = vec![sender("idle-test-b").subscribe()];
        a[0].mark_unchanged();
        b[0].mark_unchanged();
        produced("idle-test-a");
        tokio::time::timeout(Duration::from_secs(5), changed(&mut a))
            .await
            .expect("the member of idle-test-a was not woken");
        let slept = tokio::time::timeout(Duration::from_millis(50), changed(&mut b)).await;
        assert!(slept.is_err(), "a member of another topic was woken");
    }

    #[tokio::test]
    async fn a_production_before_the_wait_still_wakes() {
        // The event is produced between the member's last fetch and its wait: the wake-up
        // must not be lost, or the event would wait for the next peek.
        let mut a = vec![sender("idle-test-early").subscribe()];
        a[0].mark_unchanged();
        produced("idle-test-early");
        tokio::time::timeout(Duration::from_millis(500), changed(&mut a))
            .await
            .expect("a production before the wait was lost");
    }

    #[test]
    fn a_peek_lasts_at_least_one_fetch_round_trip() {
        assert_eq!(
            peek_window(Duration::from_millis(10)),
            Duration::from_millis(500)
        );
        assert_eq!(
            peek_window(Duration::from_millis(500)),
            Duration::from_millis(2000)
        );
    }
}
