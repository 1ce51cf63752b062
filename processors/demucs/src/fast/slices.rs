//! Element-wise and reduction loops over slices, each compiled for AVX-512 and AVX2+FMA as
//! well as for the baseline and dispatched at run time ([`crate::simd_x86`]).

use super::approx::{exp, gelu, sigmoid};
use crate::simd;

/// Sum with eight independent lanes so the loop vectorises.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    let tail: f32 = rest.iter().map(|v| f(*v)).sum();
    acc.iter().map(|v| f64::from(*v)).sum::<f64>() + f64::from(tail)
}

/// Mean and (biased) variance, two passes in float32 lanes summed in float64.
pub(crate) fn moments(s: &[f32]) -> (f64, f64) {
    let mut out = (0.0, 0.0);
    moments_into(s, &mut out);
    out
}

simd!(moments_into, (s: &[f32], out: &mut (f64, f64)), {
    let n = s.len() as f64;
    let mean = lane_sum(s, |v| v) / n;
    let m = mean as f32;
    *out = (mean, lane_sum(s, |v| (v - m) * (v - m)) / n);
});

simd!(pub(crate) gelu_slice, (d: &mut [f32], s: &[f32]), {
    d.iter_mut().zip(s).for_each(|(d, s)| *d = gelu(*s));
});

simd!(pub(crate) softmax_in_place, (d: &mut [f32]), {
    let inv = (1.0 / exp_shifted_in_place(d)) as f32;
    d.iter_mut().for_each(|d| *d *= inv);
});

/// `d ← exp(d - max(d))`, returning the sum: a softmax row without the final division,
/// which the attention kernel applies to its much shorter output row instead.
#[inline(always)]
fn exp_shifted_in_place(d: &mut [f32]) -> f64 {
    let mut m = [f32::NEG_INFINITY; 16];
    let chunks = d.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            m[i] = m[i].max(c[i]);
        }
    }
    let max = rest
        .iter()
        .chain(m.iter())
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut acc = [0f32; 16];
    let mut chunks = d.chunks_exact_mut(16);
    for c in &mut chunks {
        for i in 0..16 {
            c[i] = exp(c[i] - max);
            acc[i] += c[i];
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        tail += *v;
    }
    acc.iter().map(|v| f64::from(*v)).sum::<f64>() + f64::from(tail)
}

simd!(exp_rows_in_place, (rows: &mut [f32], n: usize, sums: &mut [f32]), {
    for (r, s) in rows.chunks_exact_mut(n).zip(sums.iter_mut()) {
        *s = exp_shifted_in_place(r) as f32;
    }
});

/// Each `n`-long row of `rows` ← `exp(row - max(row))`, its sum in `sums`: softmax up to the
/// division (the attention kernel's score rows).
pub(crate) fn softmax_rows_unnormalised(rows: &mut [f32], n: usize, sums: &mut [f32]) {
    exp_rows_in_place(rows, n, sums);
}

simd!(pub(crate) gelu_in_place, (d: &mut [f32]), {
    d.iter_mut().for_each(|d| *d = gelu(*d));
});

simd!(pub(crate) affine_in_place, (d: &mut [f32], scale: f32, shift: f32, then_gelu: bool), {
    if then_gelu {
        d.iter_mut().for_each(|d| *d = gelu(*d * scale + shift));
    } else {
        d.iter_mut().for_each(|d| *d = *d * scale + shift);
    }
});

// `x += scale · (a·na.0 + na.1) · sigmoid(g·ng.0 + ng.1)`: a normalised GLU added as a
// scaled residual (DConv's last three steps).
simd!(pub(crate) glu_residual, (x: &mut [f32], a: &[f32], g: &[f32], na: (f32, f32), ng: (f32, f32), scale: f32), {
    for ((x, a), g) in x.iter_mut().zip(a).zip(g) {
        *x += scale * (a * na.0 + na.1) * sigmoid(g * ng.0 + ng.1);
    }
});

simd!(pub(crate) glu_slice, (d: &mut [f32], a: &[f32], g: &[f32]), {
    for ((d, a), g) in d.iter_mut().zip(a).zip(g) {
        *d = a * sigmoid(*g);
    }
});

simd!(pub(crate) affine_slice, (d: &mut [f32], s: &[f32], scale: f32, shift: f32, then_gelu: bool), {
    if then_gelu {
        d.iter_mut().zip(s).for_each(|(d, s)| *d = gelu(s * scale + shift));
    } else {
        d.iter_mut().zip(s).for_each(|(d, s)| *d = s * scale + shift);
    }
});

simd!(pub(crate) axpy, (y: &mut [f32], a: f32, x: &[f32]), {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
});
