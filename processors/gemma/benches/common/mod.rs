//! What both Gemma benches share: their knobs from the environment, the thread setting they
//! give candle, and the greedy run they time (one prefill pass, then one token per pass).

use std::time::Instant;

use candle_core::Tensor;
use roar_gemma::generate::argmax;

/// `name` from the environment as a number, `default` when unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The middle value (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `GEMMA_BENCH_THREADS` (default 2), also given to candle through `RAYON_NUM_THREADS` when
/// that is unset, so that both sides of the comparison use the same threads.
pub fn threads() -> usize {
    let threads = env_usize("GEMMA_BENCH_THREADS", 2);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Read by candle's thread pool when it first starts, which is after this.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    threads
}

/// One greedy run's times: the prefill pass and all `steps` decode passes, in seconds.
pub struct Run {
    pub prefill_s: f64,
    pub decode_s: f64,
}

/// Times `runs` greedy runs of `steps` new tokens after `prompt`, each with a fresh cache from
/// `new_cache`; `forward(ids, cache)` is the model's pass. Returns every run's times and the
/// last run's tokens.
pub fn time_greedy<C>(
    prompt: &[u32],
    steps: usize,
    runs: usize,
    mut new_cache: impl FnMut() -> C,
    mut forward: impl FnMut(&[u32], &mut C) -> Tensor,
) -> (Vec<Run>, Vec<u32>) {
    let (mut times, mut tokens) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut cache = new_cache();
        let t0 = Instant::now();
        let mut logits = forward(prompt, &mut cache);
        let t1 = Instant::now();
        tokens.clear();
        for _ in 0..steps {
            let next = argmax(&logits).expect("argmax");
            tokens.push(next);
            logits = forward(&[next], &mut cache);
        }
        let t2 = Instant::now();
        times.push(Run {
            prefill_s: (t1 - t0).as_secs_f64(),
            decode_s: (t2 - t1).as_secs_f64(),
        });
    }
    (times, tokens)
}
