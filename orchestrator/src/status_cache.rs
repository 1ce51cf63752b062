//! Rendered `GET /status/{file_id}` bodies, kept until the projection changes. Every plain
//! `/status` read used to query Postgres four or five times and render the same JSON again;
//! a page polling its file (or a thousand pages polling theirs) now costs one read per change.
//!
//! Validity rests on the projection's commit notifications ([`Notifier`], the same `LISTEN`
//! that wakes the event streams): an entry belongs to the notification generation its read
//! started in, and the first lookup in a later generation drops every entry. An entry is used
//! only while the `LISTEN` connection is up (a lost notification could otherwise keep a stale
//! body) and for at most `http.status_cache_max_age_ms`, which bounds what changes without a
//! commit: download links age, and the live-worker note of a waiting job follows the control
//! topic. Reads with `?after=` (read-your-writes) or `as_of` never use it.
//!
//! The body does not depend on who asks, only whether they may: an entry keeps the file's
//! owner and every hit checks the caller against it, as [`visible_file`] does on a miss.
//!
//! [`visible_file`]: crate::routes::status::visible_file

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::notifier::Notifier;

/// A body no larger than this share of the budget is kept; a bigger one is rendered each time.
const LARGEST_SHARE: usize = 8;

#[derive(Clone)]
pub(crate) struct Entry {
    pub owner: String,
    pub body: Bytes,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    entries: HashMap<String, Entry>,
}

/// Bounded by the bytes of its bodies (`http.status_cache_bytes`; 0 turns it off).
pub(crate) struct StatusCache {
    max_bytes: usize,
    max_age: Duration,
    inner: Mutex<Inner>,
}

impl StatusCache {
    pub(crate) fn new(max_bytes: usize, max_age: Duration) -> Self {
        Self {
            max_bytes,
            max_age,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation a read may be cached under, taken before the read; `None` when the cache
    /// is off or notifications are not being received.
    pub(crate) fn generation(&self, notifier: &Notifier) -> Option<u64> {
        (self.max_bytes > 0)
            .then(|| notifier.generation())
            .flatten()
    }

    /// The body of `file_id` rendered in the current generation, if any and young enough.
    pub(crate) fn get(&self, notifier: &Notifier, file_id: &str) -> Option<Entry> {
        let now = self.generation(notifier)?;
        let mut inner = self.lock();
        inner.advance(now);
        let e = inner.entries.get(file_id)?;
        if e.at.elapsed() <= self.max_age {
            return Some(e.clone());
        }
        let len = e.body.len();
        inner.entries.remove(file_id);
        inner.bytes -= len;
        None
    }

    /// Keeps `body`, read since `generation`, unless a commit arrived meanwhile (the read may
    /// predate it) or it would take more than its share.
    pub(crate) fn put(
        &self,
        notifier: &Notifier,
        generation: u64,
        file_id: &str,
        owner: &str,
        body: Bytes,
    ) {
        if body.len() > self.max_bytes / LARGEST_SHARE
            || self.generation(notifier) != Some(generation)
        {
            return;
        }
        let mut inner = self.lock();
        inner.advance(generation);
        if inner.generation != generation {
            return;
        }
        if let Some(old) = inner.entries.remove(file_id) {
            inner.bytes -= old.body.len();
        }
        // Over budget: drop entries (whichever come first: all are equally current) until it fits.
        while inner.bytes + body.len() > self.max_bytes {
            let Some(k) = inner.entries.keys().next().cloned() else {
                break;
            };
            if let Some(e) = inner.entries.remove(&k) {
                inner.bytes -= e.body.len();
            }
        }
        inner.bytes += body.len();
        let entry = Entry {
            owner: owner.to_string(),
            body,
            at: Instant::now(),
        };
        inner.entries.insert(file_id.to_string(), entry);
    }
}

impl Inner {
    /// Drops everything rendered before generation `now`.
    fn advance(&mut self, now: u64) {
        if now > self.generation {
            self.entries.clear();
            self.bytes = 0;
            self.generation = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening() -> Notifier {
        let n = Notifier::default();
        n.listening_for_test(true);
        n
    }

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn a_body_is_served_until_the_next_commit() {
        let (n, c) = (
            listening(),
            StatusCache::new(1 << 20, Duration::from_secs(60)),
        );
        let g = c.generation(&n).unwrap();
        c.put(&n, g, "f1", "alice", body(10));
        let hit = c.get(&n, "f1").expect("cached");
        assert_eq!((hit.owner.as_str(), hit.body.len()), ("alice", 10));
        assert!(c.get(&n, "f2").is_none());
        n.commit_for_test();
        assert!(
            c.get(&n, "f1").is_none(),
            "a commit drops what was rendered before it"
        );
        assert_eq!(c.lock().bytes, 0);
    }

    #[test]
    fn a_read_that_a_commit_overtook_is_not_kept() {
        let (n, c) = (
            listening(),
            StatusCache::new(1 << 20, Duration::from_secs(60)),
        );
        let g = c.generation(&n).unwrap();
        n.commit_for_test();
        c.put(&n, g, "f1", "alice", body(10));
        assert!(c.get(&n, "f1").is_none());
    }

    #[test]
    fn nothing_is_cached_or_served_while_notifications_are_not_received() {
        let (n, c) = (
            listening(),
            StatusCache::new(1 << 20, Duration::from_secs(60)),
        );
        let g = c.generation(&n).unwrap();
        c.put(&n, g, "f1", "alice", body(10));
        n.listening_for_test(false);
        assert_eq!(c.generation(&n), None);
        assert!(c.get(&n, "f1").is_none());
        let off = StatusCache::new(0, Duration::from_secs(60));
        assert_eq!(off.generation(&listening()), None, "0 bytes turns it off");
    }

    #[test]
    fn an_old_body_is_not_served() {
        let (n, c) = (
            listening(),
            StatusCache::new(1 << 20, Duration::from_millis(1)),
        );
        let g = c.generation(&n).unwrap();
        c.put(&n, g, "f1", "alice", body(10));
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.get(&n, "f1").is_none());
        assert_eq!(c.lock().bytes, 0);
    }

    #[test]
    fn the_bodies_stay_within_the_budget() {
        let (n, c) = (listening(), StatusCache::new(800, Duration::from_secs(60)));
        let g = c.generation(&n).unwrap();
        for i in 0..50 {
            c.put(&n, g, &format!("f{i}"), "alice", body(100));
            let inner = c.lock();
            let sum: usize = inner.entries.values().map(|e| e.body.len()).sum();
            assert_eq!(sum, inner.bytes);
            assert!(inner.bytes <= 800, "{} bytes kept", inner.bytes);
        }
        assert!(c.get(&n, "f49").is_some(), "the newest is kept");
        c.put(&n, g, "big", "alice", body(101));
        assert!(
            c.get(&n, "big").is_none(),
            "over an eighth of the budget: not kept"
        );
    }
}
