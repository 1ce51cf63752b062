//! The encoder's element-wise work on the CPU, in place and vectorised: GELU (exact, through
//! an `erf` approximation) and the attention softmax (through a polynomial `exp`).
//!
//! candle computes GELU with libm's scalar `erff` per element and softmax with the scalar
//! `exp`, each into a fresh tensor, and runs large element-wise maps on its own spinning
//! thread pool beside rayon's (which runs the matrix products). Here each loop is compiled
//! for AVX-512, for AVX2+FMA and for the baseline, the widest the CPU has is picked once at
//! run time, and the work is split on rayon's pool, the one the matrix products use.
//!
//! Accuracy: `erf` is within 1.4e-7 of the exact function (two fitted polynomials, below;
//! tested here ≤ 1e-6), so GELU stays the reference's erf form; `exp` reduces to `2^n · e^r`
//! with |r| ≤ ln 2 / 2 and a degree-7 Taylor polynomial (relative error within two f32 ulps:
//! tested). The encoder fidelity tests are sensitive at this level: with Abramowitz &
//! Stegun's 7.1.26 `erf` (4.9e-7 in f32) base's second window went past its bound.

use std::sync::OnceLock;

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Tensor};
use rayon::prelude::*;

use crate::error::Result;

/// Below this many elements a map runs on the calling thread: handing it to the pool costs
/// more than it saves (the decoder's one-row steps).
const PAR_MIN: usize = 32 * 1024;
/// Elements per parallel task for the plain maps.
const CHUNK: usize = 16 * 1024;

/// The vector extension a loop is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Avx512,
    Avx2,
    Scalar,
}

impl Level {
    /// The widest level this CPU runs, detected once.
    pub(crate) fn detect() -> Self {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("fma")
                {
                    return Level::Avx512;
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return Level::Avx2;
                }
            }
            Level::Scalar
        })
    }

    /// Every level this CPU can run (for the tests, which compare them).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let top = Self::detect();
        [Self::Avx512, Self::Avx2, Self::Scalar]
            .into_iter()
            .skip_while(|l| *l != top)
            .collect()
    }
}

/// Defines `fn $name(level, args)`: `$body` compiled three times (AVX-512, AVX2+FMA, baseline)
/// and the copy for `level` called. The bodies are written lane by lane (fixed-size blocks,
/// no data-dependent branches) so the compiler vectorises them at each width; `mul_add` keeps
/// every level's rounding the same (one fused rounding, in hardware or in software).
macro_rules! multiversion {
    ($name:ident, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?, $body:block) => {
        fn $name(level: $crate::kernels::Level, $($arg: $ty),*) $(-> $ret)? {
            use $crate::kernels::Level;
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match level {
                    // SAFETY: a level above Scalar is only ever `Level::detect()`'s answer
                    // (or below it), so the CPU has the features the copy is compiled for;
                    // the body itself is safe code.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above, for AVX2 and FMA.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Scalar => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Lanes per block: one AVX-512 register (two AVX2 ones).
const LANES: usize = 16;

/// `e^x` for `x ≤ 88` (softmax and `erf` only feed it `x ≤ 0`); 0 below −87.3 (where f32
/// would be subnormal), so `e^-∞ = 0` as the masked attention scores need.
#[inline(always)]
fn exp_lane(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for the n that occur (|n| ≤ 127).
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2^23: adding it rounds to an integer (ties to even) in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LOW: f32 = -87.33;
    let c = x.clamp(LOW, 88.0);
    let t = c.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, c));
    // e^r, |r| ≤ 0.35: Taylor to r^7 (the next term is below 6e-9 relative).
    let mut p: f32 = 1.0 / 5040.0;
    p = p.mul_add(r, 1.0 / 720.0);
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    // 2^n from t's bits (ROUND's bits plus n), without a float-to-int conversion.
    let scale = f32::from_bits(t.to_bits().wrapping_add(127).wrapping_sub(ROUND.to_bits()) << 23);
    if x < LOW {
        0.0
    } else {
        p * scale
    }
}

/// `erf(x)`, absolute error ≤ 1.4e-7 (about two f32 ulps; tested ≤ 1e-6). Two fits of our
/// own (least squares on Chebyshev nodes, in float64, `scripts/fit_erf.py`): `x · P(x²)` for
/// |x| < 1, and `1 − e^(−x²) · Q(|x| − 2.5)` up to 4, past which erf rounds to 1 in f32. Both
/// are computed and one is picked, so the loop has no branch.
#[inline(always)]
fn erf_lane(x: f32) -> f32 {
    const SMALL: [f32; 7] = [
        7.933_398_6e-5,
        -0.000_803_482,
        0.005_191_216,
        -0.026_855_398,
        0.112_836_26,
        -0.376_126_3,
        // The fit's constant term is erf'(0) = 2/√π to the last bit.
        std::f32::consts::FRAC_2_SQRT_PI,
    ];
    const LARGE: [f32; 11] = [
        1.671_832_7e-6,
        -6.386_21e-6,
        1.435_350_6e-5,
        -5.358_525_2e-5,
        0.000_212_972_36,
        -0.000_738_998_4,
        0.002_465_982_2,
        -0.007_999_345,
        0.024_938_203,
        -0.074_347_6,
        0.210_806_35,
    ];
    let a = x.abs();
    let u = a * a;
    let mut p = SMALL[0];
    for c in &SMALL[1..] {
        p = p.mul_add(u, *c);
    }
    let small = p * a;
    let t = a - 2.5;
    let mut q = LARGE[0];
    for c in &LARGE[1..] {
        q = q.mul_add(t, *c);
    }
    let large = (-q).mul_add(exp_lane(-u), 1.0);
    let y = if a < 1.0 {
        small
    } else if a < 4.0 {
        large
    } else {
        1.0
    };
    y.copysign(x)
}

/// GELU in the reference's exact form, `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
fn gelu_lane(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_lane(x * std::f32::consts::FRAC_1_SQRT_2))
}

multiversion!(gelu_slice, (xs: &mut [f32]), {
    let mut blocks = xs.chunks_exact_mut(LANES);
    for b in &mut blocks {
        for v in b.iter_mut() {
            *v = gelu_lane(*v);
        }
    }
    for v in blocks.into_remainder() {
        *v = gelu_lane(*v);
    }
});

multiversion!(bias_gelu_rows, (xs: &mut [f32], bias: &[f32]), {
    for row in xs.chunks_exact_mut(bias.len()) {
        let mut blocks = row.chunks_exact_mut(LANES);
        let mut bb = bias.chunks_exact(LANES);
        for (b, c) in (&mut blocks).zip(&mut bb) {
            for (v, w) in b.iter_mut().zip(c) {
                *v = gelu_lane(*v + *w);
            }
        }
        for (v, w) in blocks.into_remainder().iter_mut().zip(bb.remainder()) {
            *v = gelu_lane(*v + *w);
        }
    }
});

multiversion!(softmax_rows, (xs: &mut [f32], width: usize, scale: f32), {
    for row in xs.chunks_exact_mut(width) {
        // Block-wise maxima and sums: independent lanes, so they vectorise without the
        // compiler having to reorder one running sum.
        let mut m = [f32::NEG_INFINITY; LANES];
        let mut blocks = row.chunks_exact(LANES);
        for b in &mut blocks {
            for (mi, &v) in m.iter_mut().zip(b) {
                *mi = if v > *mi { v } else { *mi };
            }
        }
        let mut max = f32::NEG_INFINITY;
        for &v in m.iter().chain(blocks.remainder()) {
            max = if v > max { v } else { max };
        }
        let mut s = [0f32; LANES];
        let mut blocks = row.chunks_exact_mut(LANES);
        for b in &mut blocks {
            for (si, v) in s.iter_mut().zip(b.iter_mut()) {
                *v = exp_lane((*v - max) * scale);
                *si += *v;
            }
        }
        let mut sum = 0f32;
        for v in blocks.into_remainder() {
            *v = exp_lane((*v - max) * scale);
            sum += *v;
        }
        sum += s.iter().sum::<f32>();
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
});

/// `xs` in place: GELU, split across rayon's pool when large.
pub(crate) fn gelu(level: Level, xs: &mut [f32]) {
    if xs.len() < PAR_MIN {
        gelu_slice(level, xs);
    } else {
        xs.par_chunks_mut(CHUNK).for_each(|c| gelu_slice(level, c));
    }
}

/// `xs` (rows of `bias.len()`) in place: `gelu(x + bias)` row by row.
pub(crate) fn bias_gelu(level: Level, xs: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    if xs.len() < PAR_MIN {
        bias_gelu_rows(level, xs, bias);
    } else {
        let rows = (CHUNK / bias.len()).max(1);
        xs.par_chunks_mut(rows * bias.len())
            .for_each(|c| bias_gelu_rows(level, c, bias));
    }
}

/// `xs` (rows of `width`) in place: `softmax(scale · row)` for each row (`scale > 0`).
pub(crate) fn softmax(level: Level, xs: &mut [f32], width: usize, scale: f32) {
    if width == 0 {
        return;
    }
    if xs.len() < PAR_MIN {
        softmax_rows(level, xs, width, scale);
    } else {
        let rows = (CHUNK / width).max(1);
        xs.par_chunks_mut(rows * width)
            .for_each(|c| softmax_rows(level, c, width, scale));
    }
}

/// The tensor-level ops: in place on a contiguous float32 CPU tensor, else candle's own.
enum Op<'a> {
    Gelu,
    BiasGelu(&'a [f32]),
    Softmax(f32),
}

impl InplaceOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::Gelu => "roar-gelu",
            Op::BiasGelu(_) => "roar-bias-gelu",
            Op::Softmax(_) => "roar-softmax",
        }
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(all), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("{} needs a contiguous float32 tensor", self.name());
        };
        let xs = &mut all[start..end];
        let width = layout.dims().last().copied().unwrap_or(1);
        let level = Level::detect();
        match self {
            Op::Gelu => gelu(level, xs),
            Op::BiasGelu(b) => {
                if b.len() != width {
                    candle_core::bail!("bias of {} for rows of {width}", b.len());
                }
                bias_gelu(level, xs, b)
            }
            Op::Softmax(scale) => softmax(level, xs, width, *scale),
        }
        Ok(())
    }
}

/// Whether `t` can be worked on here (a float32 tensor on the CPU).
fn on_cpu(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// GELU of `x`. `x` must be the caller's own (a fresh result, not a view of a tensor kept
/// elsewhere): on the CPU its storage is overwritten.
pub(crate) fn gelu_tensor(x: Tensor) -> Result<Tensor> {
    if on_cpu(&x) {
        let x = x.contiguous()?;
        x.inplace_op1(&Op::Gelu)?;
        Ok(x)
    } else {
        Ok(x.gelu_erf()?)
    }
}

/// `gelu(x + bias)` over the last dimension (`x` is the caller's own, as above).
pub(crate) fn bias_gelu_tensor(x: Tensor, bias: &Tensor) -> Result<Tensor> {
    if on_cpu(&x) && on_cpu(bias) {
        let x = x.contiguous()?;
        let b = bias.flatten_all()?.to_vec1::<f32>()?;
        x.inplace_op1(&Op::BiasGelu(&b))?;
        Ok(x)
    } else {
        Ok(x.broadcast_add(bias)?.gelu_erf()?)
    }
}

/// `softmax(scale · x)` over the last dimension (`x` is the caller's own, as above).
pub(crate) fn softmax_tensor(x: Tensor, scale: f64) -> Result<Tensor> {
    if on_cpu(&x) && scale > 0.0 {
        let x = x.contiguous()?;
        x.inplace_op1(&Op::Softmax(scale as f32))?;
        Ok(x)
    } else {
        Ok(candle_nn::ops::softmax_last_dim(&(x * scale)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 inputs spread over `[lo, hi]`, with the interval's ends.
    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..=n)
            .map(|i| lo + (hi - lo) * i as f32 / n as f32)
            .collect()
    }

    fn erf64(x: f64) -> f64 {
        // A reference independent of the approximation: erf by its Taylor series for small
        // |x| and by the continued fraction of erfc for large |x|, in f64.
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut term, mut sum, mut k) = (a, a, 0.0);
            while term.abs() > 1e-17 * sum.abs() {
                k += 1.0;
                term *= -a * a / k;
                sum += term / (2.0 * k + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = e^{-a²}/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        v.copysign(x)
    }

    #[test]
    fn erf_within_1e6_of_the_exact_function() {
        for level in Level::available() {
            let xs = grid(-6.0, 6.0, 200_000);
            let mut worst = 0f64;
            for &x in &xs {
                let got = erf_at(level, x) as f64;
                worst = worst.max((got - erf64(x as f64)).abs());
            }
            assert!(worst <= 1e-6, "{level:?}: erf off by {worst:e}");
        }
    }

    multiversion!(erf_at, (x: f32) -> f32, { erf_lane(x) });
    multiversion!(exp_at, (x: f32) -> f32, { exp_lane(x) });

    #[test]
    fn exp_within_two_ulps_and_zero_for_minus_infinity() {
        for level in Level::available() {
            for x in grid(-87.0, 88.0, 400_000) {
                let want = (x as f64).exp();
                let got = exp_at(level, x) as f64;
                let rel = (got - want).abs() / want;
                assert!(rel <= 2.4e-7, "{level:?}: exp({x}) = {got}, want {want}");
            }
            assert_eq!(exp_at(level, f32::NEG_INFINITY), 0.0);
            assert_eq!(exp_at(level, -1e30), 0.0);
            assert_eq!(exp_at(level, 0.0), 1.0);
        }
    }

    #[test]
    fn gelu_and_bias_gelu_match_the_erf_form() {
        let width = 40; // not a multiple of the lanes: the remainders are covered too
        let rows = 1000; // above PAR_MIN: the parallel split is covered too
        let xs: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7919 % 2003) as f32 / 2003.0 - 0.5) * 16.0)
            .collect();
        let bias: Vec<f32> = (0..width).map(|j| j as f32 / 10.0 - 2.0).collect();
        let exact = |x: f64| 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2));
        for level in Level::available() {
            let mut g = xs.clone();
            gelu(level, &mut g);
            let mut bg = xs.clone();
            bias_gelu(level, &mut bg, &bias);
            for (i, &x) in xs.iter().enumerate() {
                let want = exact(x as f64);
                let tol = 1e-6 * (x.abs() as f64).max(1.0);
                assert!((g[i] as f64 - want).abs() <= tol, "{level:?}: gelu({x})");
                let xb = x + bias[i % width];
                let want = exact(xb as f64);
                let tol = 1e-6 * (xb.abs() as f64).max(1.0);
                assert!((bg[i] as f64 - want).abs() <= tol, "{level:?}: gelu({xb})");
            }
        }
    }

    #[test]
    fn softmax_matches_f64_with_masks_and_scale() {
        let width = 1501; // an odd width like the decoder's growing rows
        let rows = 30;
        let mut xs: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 104_729 % 10_007) as f32 / 10_007.0 - 0.5) * 60.0)
            .collect();
        // A causal-mask-like tail of −∞ on every other row.
        for r in (0..rows).step_by(2) {
            for v in &mut xs[r * width + width / 2..(r + 1) * width] {
                *v = f32::NEG_INFINITY;
            }
        }
        for level in Level::available() {
            let mut got = xs.clone();
            softmax(level, &mut got, width, 0.125);
            for (r, (row, out)) in xs.chunks(width).zip(got.chunks(width)).enumerate() {
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let e: Vec<f64> = row
                    .iter()
                    .map(|&v| ((v as f64 - max) * 0.125).exp())
                    .collect();
                let sum: f64 = e.iter().sum();
                for (j, (&o, &w)) in out.iter().zip(&e).enumerate() {
                    let want = w / sum;
                    assert!(
                        (o as f64 - want).abs() <= 1e-6 * want.max(1e-3),
                        "{level:?}: row {r} col {j}: {o} vs {want}"
                    );
                    if row[j] == f32::NEG_INFINITY {
                        assert_eq!(o, 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn tensor_ops_agree_with_candle() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::from_vec(grid(-8.0, 8.0, 4095), (8, 512), &dev).unwrap();
        let bias = Tensor::from_vec(grid(-1.0, 1.0, 511), 512, &dev).unwrap();
        let cmp = |a: &Tensor, b: &Tensor, tol: f32| {
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            assert!(d <= tol, "{d}");
        };
        let want = x.gelu_erf().unwrap();
        cmp(&gelu_tensor(x.copy().unwrap()).unwrap(), &want, 4e-6);
        let want = x.broadcast_add(&bias).unwrap().gelu_erf().unwrap();
        cmp(
            &bias_gelu_tensor(x.copy().unwrap(), &bias).unwrap(),
            &want,
            4e-6,
        );
        let want = candle_nn::ops::softmax_last_dim(&(&x * 0.125).unwrap()).unwrap();
        cmp(
            &softmax_tensor(x.copy().unwrap(), 0.125).unwrap(),
            &want,
            5e-7,
        );
        // A transposed view is copied first (and its source left alone).
        let t = x.t().unwrap();
        let want = candle_nn::ops::softmax_last_dim(&(&t * 0.125).unwrap().contiguous().unwrap());
        cmp(
            &softmax_tensor(t.clone(), 0.125).unwrap(),
            &want.unwrap(),
            5e-7,
        );
        cmp(&t.t().unwrap(), &x, 0.0);
    }
}
