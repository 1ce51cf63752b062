//! The decoder's output projection on the CPU: logits over the whole vocabulary, the largest
//! cost of a decoding step. Each step reads the `[vocab, d]` token embedding once (80 MB at
//! tiny's float32) for a handful of rows, so the product is bound by memory, not arithmetic.
//! candle hands a one-row product to a single-threaded matrix-vector kernel; here every thread
//! takes a stretch of the vocabulary and computes all rows' dot products against each
//! embedding row while it is in cache, so the embedding is read once per step, whatever the
//! number of hypotheses, by all the pool's threads.

use rayon::prelude::*;

/// Embedding rows per parallel task: enough to amortise scheduling, few enough for the
/// threads to share the vocabulary evenly (about a hundred tasks at Whisper's vocabulary).
const CHUNK: usize = 512;

/// Dot products are summed in this many independent lanes (vectorisable without reordering
/// a single sum).
const LANES: usize = 32;

/// `x` is `[rows, d]` and `embed` `[vocab, d]`, both row-major; returns `x · embedᵀ` as
/// `[rows, vocab]`.
pub(crate) fn logits(x: &[f32], embed: &[f32], d: usize) -> Vec<f32> {
    if d == 0 || x.len() < d {
        return Vec::new();
    }
    let rows = x.len() / d;
    let vocab = embed.len() / d;
    debug_assert_eq!(rows * d, x.len());
    debug_assert_eq!(vocab * d, embed.len());
    // [vocab, rows]: each task owns a contiguous stretch of the output.
    let mut t = vec![0f32; vocab * rows];
    t.par_chunks_mut(CHUNK * rows)
        .zip(embed.par_chunks(CHUNK * d))
        .for_each(|(out, e)| block(x, e, out, d));
    if rows == 1 {
        return t;
    }
    let mut y = vec![0f32; rows * vocab];
    for (v, r) in t.chunks_exact(rows).enumerate() {
        for (i, &val) in r.iter().enumerate() {
            y[i * vocab + v] = val;
        }
    }
    y
}

/// `out[v * rows + r] = x[r] · e[v]` for the embedding rows `e` of one task.
fn block(x: &[f32], e: &[f32], out: &mut [f32], d: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of the
        // target-feature function; it does nothing else unsafe.
        unsafe { block_avx2(x, e, out, d) };
        return;
    }
    block_lanes(x, e, out, d);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(x: &[f32], e: &[f32], out: &mut [f32], d: usize) {
    block_lanes(x, e, out, d);
}

#[inline(always)]
fn block_lanes(x: &[f32], e: &[f32], out: &mut [f32], d: usize) {
    let rows = x.len() / d;
    for (o, er) in out.chunks_exact_mut(rows).zip(e.chunks_exact(d)) {
        for (o, xr) in o.iter_mut().zip(x.chunks_exact(d)) {
            *o = dot(xr, er);
        }
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(p, q)| p * q)
        .sum();
    for (p, q) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(p).zip(q) {
            *s += p * q;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain float64 product, on odd sizes (a row width that is not a multiple of
    /// the lanes, a vocabulary that is not a multiple of the task size).
    #[test]
    fn logits_match_a_plain_product() {
        let (rows, vocab, d) = (3, 1031, 45);
        let val = |i: usize, s: usize| ((i * 7919 + s) % 97) as f32 / 48.0 - 1.0;
        let x: Vec<f32> = (0..rows * d).map(|i| val(i, 1)).collect();
        let e: Vec<f32> = (0..vocab * d).map(|i| val(i, 5)).collect();
        let y = logits(&x, &e, d);
        assert_eq!(y.len(), rows * vocab);
        for r in 0..rows {
            for v in 0..vocab {
                let want: f64 = (0..d)
                    .map(|k| f64::from(x[r * d + k]) * f64::from(e[v * d + k]))
                    .sum();
                let got = f64::from(y[r * vocab + v]);
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "row {r} token {v}: {got} against {want}"
                );
            }
        }
    }
}
