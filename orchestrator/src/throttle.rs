//! Download bandwidth per user (`http.download_bytes_per_second_per_user`): one token bucket of
//! bytes per owner, shared by all of that owner's downloads in flight, so several parallel
//! links go no faster than one. A download is a signed link without a user, so the owner is
//! the owner of the file its key lies under. In process memory: each orchestrator instance
//! limits what it serves (behind a load balancer the effective limit is per instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::{Stream, StreamExt};

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

/// One owner's bytes: up to one second's worth may go at once, then `rate` per second.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The per-owner buckets; `None` where the limit is off (0).
#[derive(Clone)]
pub struct DownloadThrottle {
    rate: f64,
    buckets: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Bucket>>>>>,
}

impl DownloadThrottle {
    /// A throttle of `bytes_per_second` per owner; `None` for 0 (no limit).
    pub fn new(bytes_per_second: u64) -> Option<Self> {
        (bytes_per_second > 0).then(|| Self {
            rate: bytes_per_second as f64,
            buckets: Arc::default(),
        })
    }

    fn bucket(&self, owner: &str) -> Arc<tokio::sync::Mutex<Bucket>> {
        let mut m = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_BUCKETS && !m.contains_key(owner) {
            // A bucket no download holds refills by itself: forgetting it loses nothing but
            // the debt of a download that just ended.
            m.retain(|_, b| Arc::strong_count(b) > 1);
        }
        m.entry(owner.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Bucket {
                    tokens: self.rate,
                    at: Instant::now(),
                }))
            })
            .clone()
    }

    /// `body`, paced so that `owner`'s downloads together stay within the rate. Chunks larger
    /// than one second's worth are split, so the pace is even whatever the store's chunking.
    pub fn pace<S, E>(&self, owner: &str, body: S) -> impl Stream<Item = Result<Bytes, E>> + Send
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Send + 'static,
    {
        let bucket = self.bucket(owner);
        let rate = self.rate;
        let piece = (rate as usize).max(1);
        body.flat_map(move |chunk| {
            let pieces: Vec<Result<Bytes, E>> = match chunk {
                Ok(mut b) => {
                    let mut out = Vec::with_capacity(b.len() / piece + 1);
                    while b.len() > piece {
                        out.push(Ok(b.split_to(piece)));
                    }
                    out.push(Ok(b));
                    out
                }
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        })
        .then(move |piece| {
            let bucket = bucket.clone();
            async move {
                if let Ok(b) = &piece {
                    take(&bucket, rate, b.len()).await;
                }
                piece
            }
        })
    }
}

/// Takes `n` bytes' worth from the bucket, waiting for what is missing. The lock is held while
/// waiting, so an owner's downloads take turns and none overtakes the rate.
async fn take(bucket: &tokio::sync::Mutex<Bucket>, rate: f64, n: usize) {
    let mut b = bucket.lock().await;
    let now = Instant::now();
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
    b.at = now;
    b.tokens -= n as f64;
    if b.tokens < 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(-b.tokens / rate)).await;
        b.tokens = 0.0;
        b.at = Instant::now();
    }
}

/// The file a storage key belongs to: `uploads/<file_id>/…` and `outputs/<file_id>/…`.
pub fn file_of_key(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    match (parts.next(), parts.next()) {
        (Some("uploads" | "outputs"), Some(f)) if roar_schemas::ids::is_valid_id('f', f) => Some(f),
        _ => None,
    }
}
