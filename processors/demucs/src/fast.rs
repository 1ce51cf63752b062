//! CPU kernels for the element-wise and normalisation steps that dominate HTDemucs outside
//! its matmuls. candle runs these single-threaded with libm's scalar `exp`/`erf`; here they
//! run over rayon with branch-free polynomial approximations that LLVM vectorises, accurate to
//! a few float32 ulps (far inside the 1e-4 fidelity budget). Other devices use candle's own
//! ops, so results agree everywhere.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `exp(x)` for float32 via 2^n · p(r), |r| ≤ ln2/2, degree-6 polynomial (≈2 ulp). Written
/// without libm calls or branches (rounding by the 1.5·2^23 trick) so loops of it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    // Above ≈ 88.37 the 2^n factor would leave float32's exponent range.
    let x = x.clamp(-87.3, 88.37);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // Two-part ln2 keeps the reduction exact enough in float32.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let k = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    p * f32::from_bits(((k + 127) as u32) << 23)
}

/// `erf(x)` (Abramowitz & Stegun 7.1.26; max error ≈ 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_72) * t
            + 0.254_829_6)
            * t
            * exp(-a * a);
    y.copysign(x)
}

/// GELU with the exact (erf) form, as `F.gelu`'s default.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

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

/// Runs `body` compiled for AVX-512 or else AVX2+FMA when the CPU has them (the crate is built
/// for baseline x86-64, where these loops would be SSE2 and scalar `exp`), else as is.
macro_rules! simd {
    ($vis:vis $name:ident, ($($arg:ident: $ty:ty),*), $body:block) => {
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                unsafe fn widest($($arg: $ty),*) { body($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq") && std::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the features were just detected.
                    return unsafe { widest($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) { body($($arg),*) }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features were just detected.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd;

/// Mean and (biased) variance, two passes in float32 lanes summed in float64.
pub(crate) fn moments(s: &[f32]) -> (f64, f64) {
    let mut out = (0.0, 0.0);
    moments_into(s, &mut out);
    out
}

/// Running statistics of a sample: count, mean, sum of squared deviations (float64), so that
/// blocks' statistics merge exactly.
#[derive(Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) n: f64,
    pub(crate) mean: f64,
    pub(crate) m2: f64,
}

impl Stats {
    /// Of one block (two passes, float32 lanes summed in float64: keep blocks to thousands of
    /// values, and merge).
    pub(crate) fn of(s: &[f32]) -> Self {
        let (mean, var) = moments(s);
        let n = s.len() as f64;
        Self {
            n,
            mean,
            m2: var * n,
        }
    }

    /// Chan et al.'s pairwise merge.
    pub(crate) fn merge(self, o: Self) -> Self {
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        Self {
            n,
            mean: self.mean + delta * o.n / n,
            m2: self.m2 + o.m2 + delta * delta * self.n * o.n / n,
        }
    }

    /// Of a long sample, in parallel blocks merged in float64.
    pub(crate) fn of_blocks(s: &[f32]) -> Self {
        s.par_chunks(STATS_BLOCK)
            .map(Self::of)
            .reduce(Self::default, Self::merge)
    }

    /// Biased variance.
    pub(crate) fn var(self) -> f64 {
        if self.n == 0.0 {
            0.0
        } else {
            self.m2 / self.n
        }
    }
}

/// Values per block of [`Stats::of_blocks`].
const STATS_BLOCK: usize = 4096;

simd!(moments_into, (s: &[f32], out: &mut (f64, f64)), {
    let n = s.len() as f64;
    let mean = lane_sum(s, |v| v) / n;
    let m = mean as f32;
    *out = (mean, lane_sum(s, |v| (v - m) * (v - m)) / n);
});

simd!(gelu_slice, (d: &mut [f32], s: &[f32]), {
    d.iter_mut().zip(s).for_each(|(d, s)| *d = gelu(*s));
});

simd!(softmax_in_place, (d: &mut [f32]), {
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

simd!(affine_slice, (d: &mut [f32], s: &[f32], scale: f32, shift: f32, then_gelu: bool), {
    if then_gelu {
        d.iter_mut().zip(s).for_each(|(d, s)| *d = gelu(s * scale + shift));
    } else {
        d.iter_mut().zip(s).for_each(|(d, s)| *d = s * scale + shift);
    }
});

/// A buffer that parallel tasks write at disjoint elements (each caller says why its tasks'
/// regions cannot overlap, and the buffer outlives them).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: only the pointer is shared; every use writes regions no other task touches.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The element `offset` places in. A method, so closures capture the whole (Sync) struct
    /// rather than its raw pointer field.
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// A float32 vector of `len` elements that `init` fills through the pointer it is given,
/// without zeroing it first: for kernel outputs that are written in full by parallel tasks.
///
/// # Safety
/// `init` must write every one of the `len` elements (and nothing past them).
pub(crate) unsafe fn written_by(len: usize, init: impl FnOnce(SharedMut)) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    init(SharedMut(v.as_mut_ptr()));
    // SAFETY: the caller guarantees all `len` elements are initialised now.
    v.set_len(len);
    v
}

/// `planes` planes of `len` floats, plane `i` filled with `value(i)`, in parallel and without
/// zeroing first (the outputs that kernels then accumulate into).
pub(crate) fn filled_planes(
    planes: usize,
    len: usize,
    value: impl Fn(usize) -> f32 + Sync,
) -> Vec<f32> {
    let fill = |d: SharedMut| {
        (0..planes).into_par_iter().for_each(|i| {
            let v = value(i);
            for j in 0..len {
                // SAFETY: plane i is elements i·len..(i+1)·len, written by this task only.
                unsafe { d.at(i * len + j).write(v) };
            }
        })
    };
    // SAFETY: the planes cover all planes · len elements.
    unsafe { written_by(planes * len, fill) }
}

thread_local! {
    /// Buffers handed back by [`Reused`], kept for the next call on this thread.
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// At most this many buffers wait in a thread's pool (the largest kernels use three at once).
const POOL_SIZE: usize = 4;

/// A scratch buffer from this thread's pool: the kernels' column buffers and transformed
/// blocks (8–16 MB each, every call) are overwritten before they are read, so they are reused
/// instead of being allocated and zeroed again. Its contents start out arbitrary.
pub(crate) struct Reused {
    buf: Vec<f32>,
    len: usize,
}

impl Reused {
    pub(crate) fn new(len: usize) -> Self {
        if len == 0 {
            // An unused buffer (a kernel path that needs none) leaves the pool alone.
            return Self {
                buf: Vec::new(),
                len,
            };
        }
        let mut buf = POOL
            .with(|p| {
                let mut p = p.borrow_mut();
                // The largest pooled buffer, so that big requests rarely grow one.
                let best = (0..p.len()).max_by_key(|&i| p[i].len())?;
                Some(p.swap_remove(best))
            })
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Self { buf, len }
    }
}

impl std::ops::Deref for Reused {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Reused {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Reused {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return;
        }
        // During thread exit the pool may already be gone; the buffer is then just freed.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_SIZE {
                p.push(buf);
            }
        });
    }
}

/// Largest absolute element-wise difference (tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("comparable tensors")
}

const CHUNK: usize = 1 << 14;

pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("fast ops take float32")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fast ops take contiguous tensors"),
    }
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "roar-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous(s, l)?;
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| gelu_slice(d, s));
        Ok((CpuStorage::F32(dst), l.shape().clone()))
    }
}

/// GELU (erf form).
pub fn gelu_t(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&Gelu)
    } else {
        x.gelu_erf()
    }
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "roar-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous(s, l)?;
        let n = *l.shape().dims().last().unwrap_or(&1);
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(n)
            .zip(src.par_chunks(n))
            .for_each(|(d, s)| {
                d.copy_from_slice(s);
                softmax_in_place(d)
            });
        Ok((CpuStorage::F32(dst), l.shape().clone()))
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&Softmax)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

struct Glu;

impl CustomOp1 for Glu {
    fn name(&self) -> &'static str {
        "roar-glu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous(s, l)?;
        let dims = l.shape().dims();
        let (b, c2) = (dims[0], dims[1]);
        let inner: usize = dims[2..].iter().product();
        let c = c2 / 2;
        let mut dst = vec![0f32; b * c * inner];
        dst.par_chunks_mut(inner).enumerate().for_each(|(i, d)| {
            let (bi, ci) = (i / c, i % c);
            let a = &src[(bi * c2 + ci) * inner..][..inner];
            let g = &src[(bi * c2 + c + ci) * inner..][..inner];
            glu_slice(d, a, g);
        });
        let mut out = dims.to_vec();
        out[1] = c;
        Ok((CpuStorage::F32(dst), Shape::from_dims(&out)))
    }
}

/// Gated linear unit over dimension 1: first half × sigmoid(second half).
pub fn glu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&Glu)
    } else {
        let c = x.dim(1)? / 2;
        x.narrow(1, 0, c)? * candle_nn::ops::sigmoid(&x.narrow(1, c, c)?)?
    }
}

/// GroupNorm over `[B, C, ...]` with per-channel affine, optionally followed by GELU.
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

struct GroupNormOp<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
    groups: usize,
    eps: f64,
    gelu: bool,
}

impl CustomOp1 for GroupNormOp<'_> {
    fn name(&self) -> &'static str {
        "roar-group-norm"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous(s, l)?;
        let dims = l.shape().dims();
        let c = dims[1];
        let inner: usize = dims[2..].iter().product();
        let per_group = c / self.groups * inner;
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(per_group)
            .zip(src.par_chunks(per_group))
            .enumerate()
            .for_each(|(i, (d, s))| {
                let (mean, var) = moments(s);
                let inv = 1.0 / (var + self.eps).sqrt();
                let first_channel = (i % self.groups) * (c / self.groups);
                for (k, (d, s)) in d.chunks_mut(inner).zip(s.chunks(inner)).enumerate() {
                    let ch = first_channel + k;
                    let scale = (inv * f64::from(self.weight[ch])) as f32;
                    let shift =
                        (f64::from(self.bias[ch]) - mean * inv * f64::from(self.weight[ch])) as f32;
                    affine_slice(d, s, scale, shift, self.gelu);
                }
            });
        Ok((CpuStorage::F32(dst), l.shape().clone()))
    }
}

impl GroupNorm {
    pub fn new(weight: Tensor, bias: Tensor, groups: usize) -> Self {
        Self {
            weight,
            bias,
            groups,
            eps: 1e-5,
        }
    }

    pub fn load(
        vb: candle_nn::VarBuilder,
        groups: usize,
        channels: usize,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(channels, "weight")?,
            bias: vb.get(channels, "bias")?,
            groups,
            eps: 1e-5,
        })
    }

    pub fn forward(&self, x: &Tensor, then_gelu: bool) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let w: Vec<f32> = self.weight.to_vec1()?;
            let b: Vec<f32> = self.bias.to_vec1()?;
            let op = GroupNormOp {
                weight: &w,
                bias: &b,
                groups: self.groups,
                eps: self.eps,
                gelu: then_gelu,
            };
            return x.contiguous()?.apply_op1_no_bwd(&op);
        }
        let (w, b) = (self.weight.clone(), self.bias.clone());
        let n = candle_nn::GroupNorm::new(w, b, x.dim(1)?, self.groups, self.eps)?;
        let y = candle_core::Module::forward(&n, x)?;
        if then_gelu {
            y.gelu_erf()
        } else {
            Ok(y)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn approximations_track_libm() {
        for i in -2000..2000 {
            let x = i as f32 * 0.01;
            let e = exp(x);
            assert!(((e - x.exp()) / x.exp()).abs() < 1e-6, "exp({x})");
            let g = gelu(x);
            let want = 0.5 * f64::from(x) * (1.0 + libm_erf(f64::from(x) / 2f64.sqrt()));
            assert!(
                (f64::from(g) - want).abs() < 1e-6,
                "gelu({x}) {g} vs {want}"
            );
        }
    }

    #[test]
    fn exp_stays_finite_to_the_top_of_its_range() {
        for x in [88.0f32, 88.37, 88.5, 88.7, 1e6] {
            assert!(exp(x).is_finite(), "exp({x}) = {}", exp(x));
        }
        assert!(((exp(88.0) - 88f32.exp()) / 88f32.exp()).abs() < 1e-6);
    }

    #[test]
    fn block_statistics_merge_to_the_whole() {
        // Offset far from zero, where float32 sums of a million values would drift.
        let v: Vec<f32> = (0..1_000_003)
            .map(|i| 1000.0 + (i % 97) as f32 * 0.01)
            .collect();
        let st = Stats::of_blocks(&v);
        let n = v.len() as f64;
        let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|x| (f64::from(*x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            (st.mean - mean).abs() < 1e-7 * mean,
            "{} vs {mean}",
            st.mean
        );
        assert!((st.var() - var).abs() < 1e-6 * var, "{} vs {var}", st.var());
        assert_eq!(Stats::of_blocks(&[]).var(), 0.0);
    }

    fn libm_erf(x: f64) -> f64 {
        // erf by its Taylor series for |x| < 3, 1 - erfc asymptotics beyond: test-only.
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn reused_buffers_have_the_length_asked_for_and_are_recycled() {
        let mut a = Reused::new(100);
        a.fill(1.0);
        let ptr = a.as_ptr();
        drop(a);
        // The same allocation comes back, shortened, with no zeroing pass.
        let b = Reused::new(50);
        assert_eq!((b.len(), b.as_ptr()), (50, ptr));
        assert!(b.iter().all(|v| *v == 1.0));
        // A second buffer while the first is out, grown from nothing.
        let c = Reused::new(200);
        assert_eq!(c.len(), 200);
        assert_ne!(c.as_ptr(), ptr);
        drop(b);
        // An empty request leaves the pooled buffer for the next real one.
        let none = Reused::new(0);
        assert_eq!(Reused::new(10).as_ptr(), ptr);
        drop(none);
    }

    #[test]
    fn planes_are_filled_with_their_values() {
        let v = filled_planes(3, 5, |i| i as f32 + 0.5);
        assert_eq!(v.len(), 15);
        for (i, plane) in v.chunks(5).enumerate() {
            assert!(plane.iter().all(|x| *x == i as f32 + 0.5));
        }
    }

    #[test]
    fn kernels_match_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (3, 8, 5, 7), &dev).unwrap();
        let diff = crate::fast::max_abs_diff;
        assert!(diff(&gelu_t(&x).unwrap(), &x.gelu_erf().unwrap()) < 1e-5);
        assert!(
            diff(
                &softmax_last_dim(&x).unwrap(),
                &candle_nn::ops::softmax_last_dim(&x).unwrap()
            ) < 1e-6
        );
        let c = 4;
        let want = (x.narrow(1, 0, c).unwrap()
            * candle_nn::ops::sigmoid(&x.narrow(1, c, c).unwrap()).unwrap())
        .unwrap();
        assert!(diff(&glu(&x).unwrap(), &want) < 1e-6);
        let w = Tensor::randn(1f32, 0.3, 8, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.3, 8, &dev).unwrap();
        let ours = GroupNorm {
            weight: w.clone(),
            bias: b.clone(),
            groups: 4,
            eps: 1e-5,
        };
        let theirs = candle_nn::GroupNorm::new(w, b, 8, 4, 1e-5).unwrap();
        let want = candle_core::Module::forward(&theirs, &x).unwrap();
        assert!(diff(&ours.forward(&x, false).unwrap(), &want) < 1e-5);
        assert!(diff(&ours.forward(&x, true).unwrap(), &want.gelu_erf().unwrap()) < 1e-5);
    }
}

simd!(pub(crate) axpy, (y: &mut [f32], a: f32, x: &[f32]), {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
});
