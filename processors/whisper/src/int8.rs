//! The decoder's 8-bit products on the CPU: weights in blocks of 32 along the input with one
//! float32 scale each (the Q8_0 layout), activations kept in float32.
//!
//! candle's Q8_0 product also quantises every activation row to 8 bits and runs on its own
//! spinning thread pool beside rayon's; a decoding step is a string of such small products,
//! so the two pools took turns on the same cores (a profile of int8 greedy decoding under load
//! had the main thread spinning at candle's barrier in 46 % of its samples). Here each task of
//! rayon's pool (the one the encoder's products and the logits use) takes a stretch of output
//! rows, turns each weight row back into float32 once, and computes its dot product with every
//! input row while the row is in cache: the weights are read once per step whatever the number
//! of hypotheses, and the activations lose nothing to a second rounding.

use rayon::prelude::*;

use crate::kernels::multiversion;
use crate::kernels::Level;

/// Weights per scale.
pub(crate) const BLOCK: usize = 32;
/// Dot products are summed in this many independent lanes (vectorisable).
const LANES: usize = 16;
/// Weight bytes per parallel task: a few L1-sized stretches of rows per thread and step.
const TASK_BYTES: usize = 32 * 1024;
/// Below this many multiply-adds a product runs on the calling thread.
const PAR_MIN: usize = 64 * 1024;

/// A `[rows, cols]` weight matrix in 8 bits.
pub(crate) struct Q8 {
    rows: usize,
    cols: usize,
    q: Vec<i8>,
    /// One per block of [`BLOCK`] weights, row by row.
    scale: Vec<f32>,
}

impl Q8 {
    /// `w` is `[rows, cols]` row-major; `cols` must be a multiple of [`BLOCK`] (the caller
    /// checks). Each block's scale maps its largest magnitude to 127.
    pub(crate) fn quantize(w: &[f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(w.len(), rows * cols);
        debug_assert!(cols.is_multiple_of(BLOCK));
        let mut q = Vec::with_capacity(w.len());
        let mut scale = Vec::with_capacity(w.len() / BLOCK);
        for b in w.chunks_exact(BLOCK) {
            let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            scale.push(d);
            q.extend(b.iter().map(|v| (v * inv).round() as i8));
        }
        Self {
            rows,
            cols,
            q,
            scale,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// `x` is `[n, cols]` row-major; returns `x · Wᵀ` as `[n, rows]`.
    pub(crate) fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.cols);
        if cols == 0 || x.len() < cols {
            return Vec::new();
        }
        let n = x.len() / cols;
        debug_assert_eq!(n * cols, x.len());
        let level = Level::detect();
        // [rows, n]: each task owns a contiguous stretch of the output.
        let mut t = vec![0f32; rows * n];
        let per = (TASK_BYTES / cols).max(1);
        let task = |(i, out): (usize, &mut [f32])| {
            let r0 = i * per;
            let r1 = r0 + out.len() / n;
            rows_block(
                level,
                x,
                &self.q[r0 * cols..r1 * cols],
                &self.scale[r0 * cols / BLOCK..r1 * cols / BLOCK],
                out,
                cols,
            );
        };
        if rows * cols * n < PAR_MIN {
            t.chunks_mut(per * n).enumerate().for_each(task);
        } else {
            t.par_chunks_mut(per * n).enumerate().for_each(task);
        }
        if n == 1 {
            return t;
        }
        let mut y = vec![0f32; n * rows];
        for (o, col) in t.chunks_exact(n).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                y[r * rows + o] = v;
            }
        }
        y
    }
}

multiversion!(rows_block, (x: &[f32], q: &[i8], scale: &[f32], out: &mut [f32], cols: usize), {
    let n = x.len() / cols;
    let mut w = vec![0f32; cols];
    for ((o, qr), sr) in out
        .chunks_exact_mut(n)
        .zip(q.chunks_exact(cols))
        .zip(scale.chunks_exact(cols / BLOCK))
    {
        for ((wb, qb), &d) in w.chunks_exact_mut(BLOCK).zip(qr.chunks_exact(BLOCK)).zip(sr) {
            for (a, &b) in wb.iter_mut().zip(qb) {
                *a = f32::from(b) * d;
            }
        }
        for (y, xr) in o.iter_mut().zip(x.chunks_exact(cols)) {
            *y = dot(xr, &w);
        }
    }
});

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Every width here is a multiple of BLOCK, hence of LANES.
    let mut acc = [0f32; LANES];
    for (p, q) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for ((s, p), q) in acc.iter_mut().zip(p).zip(q) {
            *s = p.mul_add(*q, *s);
        }
    }
    acc.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a float64 product of the dequantised weights (the kernel's own arithmetic
    /// aside, exact), and the quantisation itself within half a step of each weight.
    #[test]
    fn product_matches_the_dequantised_weights() {
        let val = |i: usize, s: usize| ((i * 7919 + s) % 197) as f32 / 50.0 - 2.0;
        for (rows, cols, n) in [(3, 64, 1), (1031, 96, 5), (700, 384, 2), (40, 32, 37)] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| val(i, 3) * (1 + i % 5) as f32)
                .collect();
            let x: Vec<f32> = (0..n * cols).map(|i| val(i, 11)).collect();
            let q = Q8::quantize(&w, rows, cols);
            assert_eq!(q.rows(), rows);
            let deq: Vec<f64> =
                q.q.iter()
                    .enumerate()
                    .map(|(i, &v)| f64::from(v) * f64::from(q.scale[i / BLOCK]))
                    .collect();
            for (i, (&a, &b)) in w.iter().zip(&deq).enumerate() {
                let step = f64::from(q.scale[i / BLOCK]);
                assert!(
                    (f64::from(a) - b).abs() <= 0.5 * step * (1.0 + 1e-6),
                    "weight {i}"
                );
            }
            let y = q.matmul(&x);
            assert_eq!(y.len(), n * rows);
            for r in 0..n {
                for o in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|k| f64::from(x[r * cols + k]) * deq[o * cols + k])
                        .sum();
                    let got = f64::from(y[r * rows + o]);
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{rows}x{cols}, row {r} output {o}: {got} against {want}"
                    );
                }
            }
        }
    }

    /// Every compiled width gives the same values as the widest.
    #[test]
    fn every_level_agrees() {
        let (rows, cols, n) = (50, 128, 3);
        let q = Q8::quantize(
            &(0..rows * cols)
                .map(|i| (i % 13) as f32 - 6.0)
                .collect::<Vec<_>>(),
            rows,
            cols,
        );
        let x: Vec<f32> = (0..n * cols).map(|i| (i % 7) as f32 / 3.0 - 1.0).collect();
        let mut outs = Vec::new();
        for level in Level::available() {
            let mut t = vec![0f32; rows * n];
            rows_block(level, &x, &q.q, &q.scale, &mut t, cols);
            outs.push(t);
        }
        for o in &outs[1..] {
            assert_eq!(o, &outs[0]);
        }
    }

    /// An all-zero block quantises to zeros (no division by a zero scale).
    #[test]
    fn zero_blocks_stay_zero() {
        let q = Q8::quantize(&[0f32; 64], 2, 32);
        assert!(q.q.iter().all(|&v| v == 0));
        assert_eq!(q.matmul(&[1f32; 32]), vec![0.0, 0.0]);
    }
}
