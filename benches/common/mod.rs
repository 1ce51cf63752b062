//! What the API benches share: a run of requests with a bounded number in flight.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

/// What a run of requests measured.
pub struct Load {
    /// The latency of every 2xx answer, in completion order.
    pub latencies: Vec<Duration>,
    /// From the first request sent to the last answer.
    pub wall: Duration,
    /// The status of every other answer (599: no answer).
    pub failed: Vec<u16>,
}

/// Runs `n` requests made by `make(i)` (each resolves to the answer's status), `c` in flight.
pub async fn load<F, Fut>(n: usize, c: usize, make: &F) -> Load
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = u16>,
{
    let start = Instant::now();
    let (mut latencies, mut failed) = (Vec::with_capacity(n), Vec::new());
    let mut inflight = FuturesUnordered::new();
    let mut next = 0;
    while next < n || !inflight.is_empty() {
        while next < n && inflight.len() < c {
            let f = make(next);
            inflight.push(async move {
                let t = Instant::now();
                (f.await, t.elapsed())
            });
            next += 1;
        }
        if let Some((code, d)) = inflight.next().await {
            if (200..300).contains(&code) {
                latencies.push(d);
            } else {
                failed.push(code);
            }
        }
    }
    Load {
        latencies,
        wall: start.elapsed(),
        failed,
    }
}
