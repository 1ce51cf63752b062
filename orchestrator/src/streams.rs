//! Open SSE streams per user. The global cap (`http.sse_max_streams`) alone let one user take
//! every slot and lock everyone else out; each user now holds at most
//! `http.sse_max_streams_per_user` at once (per orchestrator instance), and the slot is given
//! back when the stream ends, however it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct UserStreams {
    per_user: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One user's stream slot; dropping it frees the slot.
pub struct UserStream {
    user: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl UserStreams {
    pub fn new(per_user: usize) -> Self {
        Self {
            per_user,
            open: Arc::default(),
        }
    }

    /// A slot for `user`, or `None` when they already hold `per_user` streams.
    pub fn acquire(&self, user: &str) -> Option<UserStream> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user.to_string()).or_insert(0);
        if *n >= self.per_user {
            return None;
        }
        *n += 1;
        Some(UserStream {
            user: user.to_string(),
            open: self.open.clone(),
        })
    }
}

impl Drop for UserStream {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // No entry per user who ever streamed: the map stays as small as what is open.
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_the_cap_and_slots_come_back_on_drop() {
        let s = UserStreams::new(2);
        let a1 = s.acquire("a").unwrap();
        let _a2 = s.acquire("a").unwrap();
        assert!(s.acquire("a").is_none());
        assert!(s.acquire("b").is_some(), "another user is not affected");
        drop(a1);
        assert!(s.acquire("a").is_some());
        assert_eq!(
            s.open.lock().unwrap().get("b"),
            None,
            "idle users leave no entry"
        );
    }
}
