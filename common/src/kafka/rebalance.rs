//! What the consumer loop must know about rebalances: which partitions this member lost, and
//! when. librdkafka calls the context's rebalance hook from inside the loop's own poll, so a
//! revocation is recorded before the poll returns any message of the new assignment.
//!
//! Every revocation bumps a generation. A message, or an offset the loop stored, is tagged with
//! the generation current when the loop got it; it belongs to a lost partition when that
//! partition was revoked at a later generation. Such a message must not be processed (the new
//! owner reads it again from the committed offset) and such an offset must not be committed
//! (it could move the new owner's position). A partition revoked and assigned back to this
//! member starts a fresh tag, so its new messages are kept.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};

/// The consumer context of the roar consumer loop.
#[derive(Default)]
pub(super) struct LoopContext {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    generation: u64,
    revoked_at: HashMap<(String, i32), u64>,
}

impl LoopContext {
    /// The tag for a message or offset the loop gets now.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Whether `topic`/`partition` was revoked after a message tagged `tag` was received.
    pub fn revoked_since(&self, topic: &str, partition: i32, tag: u64) -> bool {
        self.lock()
            .revoked_at
            .get(&(topic.to_string(), partition))
            .is_some_and(|at| *at > tag)
    }

    /// Records a revocation (what the rebalance hook does; tests call it directly).
    pub fn record_revoked<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        let mut st = self.lock();
        st.generation += 1;
        let at = st.generation;
        for (topic, partition) in partitions {
            st.revoked_at.insert((topic.to_string(), partition), at);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain values: a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for LoopContext {}

impl ConsumerContext for LoopContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // A lost assignment (session timeout) arrives as a revocation too.
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(partitions = ?parts, "partitions revoked from this member");
            self.record_revoked(parts.iter().map(|(t, p)| (t.as_str(), *p)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_received_before_a_revocation_is_stale() {
        let ctx = LoopContext::default();
        let before = ctx.generation();
        ctx.record_revoked([("t", 1)]);
        let after = ctx.generation();
        assert!(ctx.revoked_since("t", 1, before));
        assert!(!ctx.revoked_since("t", 1, after), "reassigned: fresh tag");
        assert!(!ctx.revoked_since("t", 0, before), "other partition kept");
        assert!(!ctx.revoked_since("u", 1, before), "other topic kept");
        ctx.record_revoked([("t", 0)]);
        assert!(
            !ctx.revoked_since("t", 1, after),
            "a later revocation of another partition"
        );
        assert!(ctx.revoked_since("t", 0, after));
    }
}
