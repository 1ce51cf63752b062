//! CPU kernels for the decoder's hot loop. One generated step multiplies a couple of rows (the
//! conditional and unconditional halves of classifier-free guidance) by every weight matrix of
//! the decoder: the work is reading the weights, so [`linear`] streams each weight row once for
//! all input rows with several accumulators in flight, split over rayon by output rows (each
//! output is summed by one thread in a fixed order, so results do not depend on the thread
//! count). Longer inputs (prompts, melody prefixes) go to the `gemm` crate.

use rayon::prelude::*;

/// Runs `body` compiled for AVX-512 or else AVX2+FMA when the CPU has them (the crate builds
/// for baseline x86-64, where the lane loops below would be SSE2 without fused multiply-add).
macro_rules! simd {
    ($(#[$m:meta])* $vis:vis fn $name:ident ($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            $(#[$m])*
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                $(#[$m])*
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn widest($($arg: $ty),*) { body($($arg),*) }
                $(#[$m])*
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) { body($($arg),*) }
                match *$crate::kernels::LEVEL {
                    // SAFETY: the features were detected at run time.
                    $crate::kernels::Level::Avx512 => return unsafe { widest($($arg),*) },
                    // SAFETY: as above.
                    $crate::kernels::Level::Avx2 => return unsafe { wide($($arg),*) },
                    $crate::kernels::Level::Base => {}
                }
            }
            body($($arg),*)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident <const $g:ident: usize> ($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        $vis fn $name<const $g: usize>($($arg: $ty),*) {
            #[inline(always)]
            fn body<const $g: usize>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn widest<const $g: usize>($($arg: $ty),*) { body::<$g>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide<const $g: usize>($($arg: $ty),*) { body::<$g>($($arg),*) }
                match *$crate::kernels::LEVEL {
                    // SAFETY: the features were detected at run time.
                    $crate::kernels::Level::Avx512 => return unsafe { widest::<$g>($($arg),*) },
                    // SAFETY: as above.
                    $crate::kernels::Level::Avx2 => return unsafe { wide::<$g>($($arg),*) },
                    $crate::kernels::Level::Base => {}
                }
            }
            body::<$g>($($arg),*)
        }
    };
}
pub(crate) use simd;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Level {
    Avx512,
    Avx2,
    Base,
}

/// The widest instruction set of this CPU, detected once.
pub(crate) static LEVEL: std::sync::LazyLock<Level> = std::sync::LazyLock::new(|| {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            return Level::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Base
});

/// Lanes per accumulator: one AVX-512 register, two AVX2 ones.
const L: usize = 16;
/// Weight rows per inner block: with two input rows, 8 accumulators of 16 lanes.
const COLS: usize = 4;
/// Input rows up to which [`linear`] streams weights itself instead of calling gemm.
pub const ROWS_KERNEL_MAX: usize = 4;

/// `out[r, j] (+)= Σ_i x[r, i] · w[j, i]` for `m` rows of `x` (`m × k`) and `w` (`n × k`, the
/// PyTorch `Linear` layout); `accumulate` adds to `out` (residual connections).
pub fn linear(x: &[f32], m: usize, w: &[f32], n: usize, out: &mut [f32], accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    let k = x.len() / m;
    debug_assert_eq!(x.len(), m * k);
    debug_assert_eq!(w.len(), n * k);
    debug_assert_eq!(out.len(), m * n);
    match m {
        1 => rows::<1>(x, k, w, n, out, accumulate),
        2 => rows::<2>(x, k, w, n, out, accumulate),
        3 => rows::<3>(x, k, w, n, out, accumulate),
        4 => rows::<4>(x, k, w, n, out, accumulate),
        _ => gemm_rows(x, m, k, w, n, out, accumulate),
    }
}

fn gemm_rows(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, out: &mut [f32], acc: bool) {
    // SAFETY: the pointers cover m×k, n×k and m×n floats (checked by the caller's shapes);
    // strides describe row-major x and out, and w read as its transpose (k × n, column j = row
    // j of w). dst := 1·dst + 1·x·wᵀ when accumulating, else x·wᵀ.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            acc,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

/// Weight rows per rayon task: at least ~256 KiB of weights, so scheduling stays negligible.
fn chunk_rows(k: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let min = (65536 / k.max(1)).max(COLS);
    let even = n.div_ceil(threads * 4);
    even.max(min).div_ceil(COLS) * COLS
}

fn rows<const M: usize>(x: &[f32], k: usize, w: &[f32], n: usize, out: &mut [f32], acc: bool) {
    let chunk = chunk_rows(k, n);
    // Results j-major ([n][M]) so that each task writes one contiguous piece.
    let mut t = vec![0f32; n * M];
    t.par_chunks_mut(chunk * M)
        .enumerate()
        .for_each(|(c, dst)| {
            let j0 = c * chunk;
            let rows = dst.len() / M;
            rows_block::<M>(x, k, &w[j0 * k..(j0 + rows) * k], dst);
        });
    for j in 0..n {
        for r in 0..M {
            let v = t[j * M + r];
            let o = &mut out[r * n + j];
            *o = if acc { *o + v } else { v };
        }
    }
}

simd! {
    fn rows_block<const M: usize>(x: &[f32], k: usize, w: &[f32], dst: &mut [f32]) {
        let n = w.len() / k;
        let mut j = 0;
        while j + COLS <= n {
            let r = dot_block::<M, COLS>(x, k, &w[j * k..(j + COLS) * k]);
            for c in 0..COLS {
                for (i, v) in r.iter().enumerate() {
                    dst[(j + c) * M + i] = v[c];
                }
            }
            j += COLS;
        }
        while j < n {
            let r = dot_block::<M, 1>(x, k, &w[j * k..(j + 1) * k]);
            for (i, v) in r.iter().enumerate() {
                dst[j * M + i] = v[0];
            }
            j += 1;
        }
    }
}

/// Dot products of `M` input rows with `C` weight rows, in `L`-lane accumulators (summed
/// lane-wise, so LLVM keeps them in vector registers), then a fixed-order horizontal sum.
#[inline(always)]
fn dot_block<const M: usize, const C: usize>(x: &[f32], k: usize, w: &[f32]) -> [[f32; C]; M] {
    let mut acc = [[[0f32; L]; C]; M];
    let full = k / L * L;
    let mut i = 0;
    while i < full {
        for c in 0..C {
            let wv: &[f32; L] = w[c * k + i..c * k + i + L].try_into().unwrap();
            for (r, ar) in acc.iter_mut().enumerate() {
                let xv: &[f32; L] = x[r * k + i..r * k + i + L].try_into().unwrap();
                for l in 0..L {
                    ar[c][l] = wv[l].mul_add(xv[l], ar[c][l]);
                }
            }
        }
        i += L;
    }
    let mut out = [[0f32; C]; M];
    for r in 0..M {
        for c in 0..C {
            let mut s = hsum(&acc[r][c]);
            for t in full..k {
                s = w[c * k + t].mul_add(x[r * k + t], s);
            }
            out[r][c] = s;
        }
    }
    out
}

#[inline(always)]
fn hsum(v: &[f32; L]) -> f32 {
    let mut h = [0f32; 8];
    for l in 0..8 {
        h[l] = v[l] + v[l + 8];
    }
    (h[0] + h[4]) + (h[1] + h[5]) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// `Σ a[i]·b[i]` in lanes (attention scores).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let full = n / L * L;
    let mut acc = [0f32; L];
    let mut i = 0;
    while i < full {
        for l in 0..L {
            acc[l] = a[i + l].mul_add(b[i + l], acc[l]);
        }
        i += L;
    }
    let mut s = hsum(&acc);
    for t in full..n {
        s = a[t].mul_add(b[t], s);
    }
    s
}

/// `y += a · x` (attention's weighted sum of values).
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = a.mul_add(*xi, *yi);
    }
}

/// LayerNorm of each `d`-wide row of `x` into `out`, as `nn.LayerNorm` (biased variance).
/// Sums run in float32 lanes and are added in float64: exact enough that the order does not
/// show at 1e-6.
pub fn layer_norm(x: &[f32], d: usize, w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = lane_sum(xr, |v| v) / d as f64;
        let m = mean as f32;
        let var = lane_sum(xr, |v| (v - m) * (v - m)) / d as f64;
        let inv = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
        for i in 0..d {
            or[i] = (xr[i] - m) * inv * w[i] + b[i];
        }
    }
}

#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; L];
    let chunks = xs.chunks_exact(L);
    let tail: f64 = chunks.remainder().iter().map(|v| f64::from(f(*v))).sum();
    for c in chunks {
        for l in 0..L {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().map(|v| f64::from(*v)).sum::<f64>() + tail
}

/// `exp(x)` in float32 as 2^n · p(r) with |r| ≤ ln2/2 and a degree-6 polynomial (≈2 ulp),
/// branch-free so that loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Rounds to nearest by adding 1.5·2^23.
    const SHIFT: f32 = 12_582_912.0;
    // Below -87 the result leaves float32's normal range: 0, as libm rounds it (a select,
    // not a branch, so loops still vectorise).
    let tiny = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x.mul_add(std::f32::consts::LOG2_E, SHIFT);
    let n = t - SHIFT;
    // ln 2 split in two so that n·ln2 is subtracted without rounding.
    let r = n.mul_add(-1.428_606_8e-6, n.mul_add(-0.693_145_75, x));
    let mut p: f32 = 1.0 / 720.0;
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let e = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let y = p * f32::from_bits(((e + 127) as u32) << 23);
    if tiny {
        0.0
    } else {
        y
    }
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let mut p: f32 = 1.061_405_4;
    p = p.mul_add(t, -1.453_152_1);
    p = p.mul_add(t, 1.421_413_8);
    p = p.mul_add(t, -0.284_496_72);
    p = p.mul_add(t, 0.254_829_6);
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

simd! {
    /// The exact (erf) GELU in place, as `nn.functional.gelu`.
    pub fn gelu_in_place(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// Softmax of `x` in place (max-shifted, float32 like the reference's attention); inlined into
/// the callers' vectorised bodies.
#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

simd! {
    /// [`softmax`] compiled for the CPU's vector width.
    pub fn softmax_in_place(x: &mut [f32]) {
        softmax(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], m: usize, w: &[f32], n: usize) -> Vec<f32> {
        let k = x.len() / m;
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                out[r * n + j] = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(w[j * k + i]))
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn linear_matches_the_definition_for_every_row_count_and_odd_sizes() {
        for (m, k, n) in [
            (1, 37, 5),
            (2, 64, 9),
            (3, 129, 17),
            (4, 16, 4),
            (5, 70, 33),
            (9, 33, 7),
        ] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let want = reference(&x, m, &w, n);
            let mut got = vec![0f32; m * n];
            linear(&x, m, &w, n, &mut got, false);
            roar_testkit::assert_close(&format!("{m}x{k}x{n}"), &got, &want, 1e-5);
            // Accumulating adds to what is there.
            let base = values(m * n, 3);
            let mut acc = base.clone();
            linear(&x, m, &w, n, &mut acc, true);
            let want_acc: Vec<f32> = base.iter().zip(&want).map(|(a, b)| a + b).collect();
            roar_testkit::assert_close("accumulate", &acc, &want_acc, 1e-5);
        }
    }

    #[test]
    fn large_outputs_split_over_tasks_match() {
        let (m, k, n) = (2, 1024, 1000);
        let x = values(m * k, 4);
        let w = values(n * k, 5);
        let mut got = vec![0f32; m * n];
        linear(&x, m, &w, n, &mut got, false);
        roar_testkit::assert_close("split", &got, &reference(&x, m, &w, n), 1e-4);
    }

    #[test]
    fn exp_gelu_softmax_match_libm() {
        for i in -2000..2000 {
            let x = i as f32 * 0.04;
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-6, "exp({x}) = {a}, libm {b}");
        }
        let xs: Vec<f32> = (-600..600).map(|i| i as f32 * 0.01).collect();
        let mut g = xs.clone();
        gelu_in_place(&mut g);
        for (x, y) in xs.iter().zip(&g) {
            let want = 0.5 * f64::from(*x) * (1.0 + erf_f64(f64::from(*x) / 2f64.sqrt()));
            // The erf approximation's 1.5e-7, scaled by x/2, plus float32 rounding.
            let bound = 2e-7 * f64::from(x.abs()).max(1.0);
            assert!(
                (f64::from(*y) - want).abs() < bound,
                "gelu({x}) = {y}, want {want}"
            );
        }
        let mut s = vec![1.0f32, 2.0, 3.0, -1e9];
        softmax_in_place(&mut s);
        let z: f64 = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).sum();
        for (i, v) in [1.0f64, 2.0, 3.0].iter().enumerate() {
            assert!((f64::from(s[i]) - v.exp() / z).abs() < 1e-6);
        }
        assert_eq!(s[3], 0.0);
    }

    /// erf by its Taylor series (|x| ≤ 6 is plenty for the GELU range tested).
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn layer_norm_matches_the_definition() {
        let d = 37;
        let x = values(2 * d, 6);
        let w = values(d, 7);
        let b = values(d, 8);
        let mut out = vec![0f32; 2 * d];
        layer_norm(&x, d, &w, &b, 1e-5, &mut out);
        for r in 0..2 {
            let row = &x[r * d..(r + 1) * d];
            let mean = row.iter().map(|v| f64::from(*v)).sum::<f64>() / d as f64;
            let var = row
                .iter()
                .map(|v| (f64::from(*v) - mean).powi(2))
                .sum::<f64>()
                / d as f64;
            for i in 0..d {
                let want = (f64::from(row[i]) - mean) / (var + 1e-5).sqrt() * f64::from(w[i])
                    + f64::from(b[i]);
                assert!((f64::from(out[r * d + i]) - want).abs() < 1e-6);
            }
        }
    }
}
