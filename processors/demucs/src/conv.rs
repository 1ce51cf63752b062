//! The encoders' and decoders' convolutions on the CPU as gemms in the tensor's own layout,
//! with the step after them fused in.
//!
//! A forward convolution gathers the taps of a group of output positions into a column
//! buffer (`[kh·kw·Cin, positions]`, a few MB, reused) and runs one multi-threaded gemm per
//! group into the output, which was pre-filled with the bias. A full im2col would be
//! `kh·kw` times the input (300 MB for the outer decoder of the released models); candle's
//! conv1d also transposes its result, which every following op then pays for. The decoder's
//! skip connection is added while the taps are gathered, and GELU or GLU are applied to each
//! group while it is still in cache, so the doubled-channel GLU input never reaches memory.
//!
//! A 3x3 convolution with stride 1 and padding 1 (the frequency decoders' rewrite) runs as
//! Winograd's F(2x2, 3x3) instead ([`crate::winograd`]), with the same skip and epilogues.
//!
//! A transposed convolution along one axis is one gemm of all taps against the input as it
//! lies (no copy), followed by an overlap-add of the taps into the cropped output.
//!
//! Both take `[N, C, H, W]`; the time branch runs as `H = 1` (forward, kernel along W) or
//! `W = 1` (transposed, along H). CPU float32 only: other devices keep candle's ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fast::{contiguous, gelu_in_place, glu_slice, Reused};
use crate::gemm::{product, MatMut, MatRef, Threads};
use crate::parallel::filled_planes;
pub use crate::winograd::Epilogue;
use crate::winograd::Winograd;

/// Column-buffer (and transposed-tap buffer) size per gemm, in floats: large enough that each
/// gemm is long and its weight packing is amortised, small enough to stay in the last-level
/// cache.
const GROUP_FLOATS: usize = 1 << 21;

/// A 2-D cross-correlation with zero padding (PyTorch's `Conv2d`, or `Conv1d` as `H = 1`).
pub struct Conv2d {
    /// `[cout, kh·kw·cin]`, columns tap-major: `(a·kw + b)·cin + ci`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    cin: usize,
    cout: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    /// Zeros before and after along H.
    pad_h: (usize, usize),
    /// Zeros before and after along W.
    pad_w: (usize, usize),
    /// Column-buffer size per gemm, in floats ([`GROUP_FLOATS`]; tests make it small).
    group_floats: usize,
    /// 3x3, stride 1, padding 1: Winograd's F(2x2, 3x3) instead of the column buffer.
    winograd: Option<Winograd>,
}

/// Geometry of one call.
#[derive(Clone, Copy)]
struct Dims {
    h: usize,
    w: usize,
    extra: usize,
    ho: usize,
    wo: usize,
}

impl Conv2d {
    /// `weight`: `[cout, cin, kh, kw]`; padding given as (before, after) per axis.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: (usize, usize),
        pad_h: (usize, usize),
        pad_w: (usize, usize),
    ) -> Result<Self> {
        let (cout, cin, kh, kw) = weight.dims4()?;
        let weight = weight
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let winograd =
            ((kh, kw, stride, pad_h, pad_w) == (3, 3, (1, 1), (1, 1), (1, 1))).then(|| {
                Winograd::new(cin, cout, |o, c, a, b| {
                    weight[((o * 3 + a) * 3 + b) * cin + c]
                })
            });
        Ok(Self {
            weight,
            bias: bias.to_vec1()?,
            cin,
            cout,
            kernel: (kh, kw),
            stride,
            pad_h,
            pad_w,
            group_floats: GROUP_FLOATS,
            winograd,
        })
    }

    /// `x`: `[N, cin, H, W]`, `skip`: added to `x` first (same shape) →
    /// `[N, cout (or cout / 2 after GLU), Ho, Wo]`.
    pub fn forward(&self, x: &Tensor, skip: Option<&Tensor>, epilogue: Epilogue) -> Result<Tensor> {
        self.forward_padded(x, skip, 0, epilogue)
    }

    /// [`Conv2d::forward`] with `extra` more zeros after W (beyond the configured padding).
    pub fn forward_padded(
        &self,
        x: &Tensor,
        skip: Option<&Tensor>,
        extra: usize,
        epilogue: Epilogue,
    ) -> Result<Tensor> {
        let op = ConvOp {
            conv: self,
            epilogue,
            extra,
        };
        match skip {
            Some(s) => x.contiguous()?.apply_op2_no_bwd(&s.contiguous()?, &op),
            None => x.contiguous()?.apply_op1_no_bwd(&op),
        }
    }

    fn dims(&self, h: usize, w: usize, extra: usize) -> Result<Dims> {
        let (kh, kw) = self.kernel;
        let (hp, wp) = (
            h + self.pad_h.0 + self.pad_h.1,
            w + self.pad_w.0 + self.pad_w.1 + extra,
        );
        if hp < kh || wp < kw {
            candle_core::bail!("conv: input {h}x{w} is smaller than the kernel {kh}x{kw}");
        }
        Ok(Dims {
            h,
            w,
            extra,
            ho: (hp - kh) / self.stride.0 + 1,
            wo: (wp - kw) / self.stride.1 + 1,
        })
    }

    /// Whether the input itself is the column matrix (1x1, stride 1, no padding).
    fn is_pointwise(&self, extra: usize) -> bool {
        self.kernel == (1, 1)
            && self.stride == (1, 1)
            && self.pad_h == (0, 0)
            && self.pad_w == (0, 0)
            && extra == 0
    }

    /// Column-buffer row `r` = tap (a, b) of channel ci, for output positions `p0..p0+len`.
    fn fill_row(
        &self,
        r: usize,
        d: Dims,
        x: &[f32],
        skip: Option<&[f32]>,
        p0: usize,
        out: &mut [f32],
    ) {
        let (kw, cin) = (self.kernel.1, self.cin);
        let (a, b, ci) = (r / (kw * cin), (r / cin) % kw, r % cin);
        let plane = &x[ci * d.h * d.w..(ci + 1) * d.h * d.w];
        let skip = skip.map(|s| &s[ci * d.h * d.w..(ci + 1) * d.h * d.w]);
        let mut done = 0;
        while done < out.len() {
            let p = p0 + done;
            let (oh, ow) = (p / d.wo, p % d.wo);
            let run = (d.wo - ow).min(out.len() - done);
            let dst = &mut out[done..done + run];
            let ih = (oh * self.stride.0 + a) as isize - self.pad_h.0 as isize;
            if ih < 0 || ih >= d.h as isize {
                dst.fill(0.0);
            } else {
                let row = ih as usize * d.w;
                let src = &plane[row..row + d.w];
                let add = skip.map(|s| &s[row..row + d.w]);
                gather(
                    dst,
                    src,
                    add,
                    ow,
                    self.stride.1,
                    b as isize - self.pad_w.0 as isize,
                );
            }
            done += run;
        }
    }

    fn run(&self, x: &[f32], skip: Option<&[f32]>, n: usize, d: Dims, epi: Epilogue) -> Vec<f32> {
        if let (Some(wg), 0) = (&self.winograd, d.extra) {
            return wg.run(x, skip, &self.bias, (n, d.h, d.w), epi);
        }
        let k = self.kernel.0 * self.kernel.1 * self.cin;
        let positions = d.ho * d.wo;
        let cout_out = if epi == Epilogue::Glu {
            self.cout / 2
        } else {
            self.cout
        };
        let direct = self.is_pointwise(d.extra) && skip.is_none();
        // Direct: the input is the column matrix, so only a GLU's doubled output needs groups
        // (to stay in cache until it is halved).
        let group = match (direct, epi) {
            (true, Epilogue::Glu) => (self.group_floats / self.cout).clamp(1, positions),
            (true, _) => positions,
            (false, _) => (self.group_floats / k).clamp(1, positions),
        };
        let mut out = vec![0f32; n * cout_out * positions];
        let mut cols = Reused::new(if direct { 0 } else { k * group });
        let mut scratch = Reused::new(if epi == Epilogue::Glu {
            self.cout * group
        } else {
            0
        });
        let plane = self.cin * d.h * d.w;
        for item in 0..n {
            let xi = &x[item * plane..(item + 1) * plane];
            let si = skip.map(|s| &s[item * plane..(item + 1) * plane]);
            let oi = &mut out[item * cout_out * positions..(item + 1) * cout_out * positions];
            for p0 in (0..positions).step_by(group) {
                let len = group.min(positions - p0);
                let rhs = if direct {
                    MatRef::new(&xi[p0..], k, len, positions)
                } else {
                    cols[..k * len]
                        .par_chunks_mut(len)
                        .enumerate()
                        .for_each(|(r, row)| self.fill_row(r, d, xi, si, p0, row));
                    MatRef::new(&cols, k, len, len)
                };
                if epi == Epilogue::Glu {
                    let dst = &mut scratch[..self.cout * len];
                    fill_bias(dst, len, &self.bias);
                    self.gemm(MatMut::new(dst, self.cout, len, len), rhs);
                    let (a, g) = dst.split_at(cout_out * len);
                    oi.par_chunks_mut(positions)
                        .zip(a.par_chunks(len).zip(g.par_chunks(len)))
                        .for_each(|(o, (a, g))| glu_slice(&mut o[p0..p0 + len], a, g));
                } else {
                    oi.par_chunks_mut(positions)
                        .zip(self.bias.par_iter())
                        .for_each(|(o, b)| o[p0..p0 + len].fill(*b));
                    self.gemm(MatMut::new(&mut oi[p0..], self.cout, len, positions), rhs);
                    if epi == Epilogue::Gelu {
                        oi.par_chunks_mut(positions)
                            .for_each(|o| gelu_in_place(&mut o[p0..p0 + len]));
                    }
                }
            }
        }
        out
    }

    /// `dst[cout, len] += weight @ rhs[k, len]`.
    fn gemm(&self, dst: MatMut<'_>, rhs: MatRef<'_>) {
        let k = self.kernel.0 * self.kernel.1 * self.cin;
        let weight = MatRef::new(&self.weight, self.cout, k, k);
        product(dst, weight, rhs, true, Threads::All)
    }
}

/// `dst[i] = src[(ow + i)·stride + shift] (+ add[...])`, zero where that falls outside `src`.
fn gather(
    dst: &mut [f32],
    src: &[f32],
    add: Option<&[f32]>,
    ow: usize,
    stride: usize,
    shift: isize,
) {
    let first = (ow * stride) as isize + shift;
    // Output indices whose source index lies in 0..src.len().
    let lo = if first >= 0 {
        0
    } else {
        ((-first) as usize).div_ceil(stride)
    }
    .min(dst.len());
    let last_ok = src.len() as isize - 1 - first; // i·stride <= last_ok
    let hi = if last_ok < 0 {
        0
    } else {
        (last_ok as usize / stride + 1).min(dst.len())
    }
    .max(lo);
    dst[..lo].fill(0.0);
    dst[hi..].fill(0.0);
    let start = (first + (lo * stride) as isize) as usize;
    let span = &mut dst[lo..hi];
    if stride == 1 {
        span.copy_from_slice(&src[start..start + span.len()]);
        if let Some(add) = add {
            span.iter_mut()
                .zip(&add[start..])
                .for_each(|(d, a)| *d += a);
        }
    } else {
        for (i, v) in span.iter_mut().enumerate() {
            let j = start + i * stride;
            *v = src[j] + add.map_or(0.0, |a| a[j]);
        }
    }
}

/// Fills each `len`-long row of `dst` with its channel's bias.
fn fill_bias(dst: &mut [f32], len: usize, bias: &[f32]) {
    dst.par_chunks_mut(len)
        .zip(bias.par_iter())
        .for_each(|(r, b)| r.fill(*b));
}

struct ConvOp<'a> {
    conv: &'a Conv2d,
    epilogue: Epilogue,
    /// Zeros after W beyond the conv's own padding.
    extra: usize,
}

impl ConvOp<'_> {
    fn apply(&self, x: &[f32], skip: Option<&[f32]>, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let conv = self.conv;
        if c != conv.cin {
            candle_core::bail!("conv: {c} input channels, weights for {}", conv.cin);
        }
        if self.epilogue == Epilogue::Glu && !conv.cout.is_multiple_of(2) {
            candle_core::bail!("conv: GLU needs an even channel count, got {}", conv.cout);
        }
        let d = conv.dims(h, w, self.extra)?;
        if n == 0 {
            candle_core::bail!("conv: an empty batch");
        }
        let out = conv.run(x, skip, n, d, self.epilogue);
        let cout = out.len() / (n * d.ho * d.wo);
        Ok((
            CpuStorage::F32(out),
            Shape::from_dims(&[n, cout, d.ho, d.wo]),
        ))
    }
}

impl CustomOp1 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "roar-conv"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.apply(contiguous(s, l)?, None, l)
    }
}

impl CustomOp2 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "roar-conv-skip"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "conv: skip {:?} does not match input {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        self.apply(contiguous(s1, l1)?, Some(contiguous(s2, l2)?), l1)
    }
}

/// A transposed convolution along H (PyTorch's `ConvTranspose2d` with a `[k, 1]` kernel, or
/// `ConvTranspose1d` with the time axis as H and `W = 1`).
pub struct ConvTranspose {
    /// `[k·cout, cin]`, rows tap-major: `t·cout + o`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    /// Tap-buffer size per gemm, in floats ([`GROUP_FLOATS`]; tests make it small).
    group_floats: usize,
}

impl ConvTranspose {
    /// `weight`: `[cin, cout, k]`.
    pub fn new(weight: &Tensor, bias: &Tensor, stride: usize) -> Result<Self> {
        let (cin, cout, k) = weight.dims3()?;
        let weight = weight
            .permute((2, 1, 0))?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self {
            weight,
            bias: bias.to_vec1()?,
            cin,
            cout,
            k,
            stride,
            group_floats: GROUP_FLOATS,
        })
    }

    /// Rows of the full output for `h` input rows.
    pub fn output_rows(&self, h: usize) -> usize {
        (h.max(1) - 1) * self.stride + self.k
    }

    /// `x`: `[N, cin, H, W]` → rows `crop.0 .. crop.0 + crop.1` of the full output
    /// (`(H - 1)·stride + k` rows): `[N, cout, crop.1, W]`, with GELU after when `gelu`.
    pub fn forward(&self, x: &Tensor, crop: (usize, usize), gelu: bool) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&ConvTrOp {
            conv: self,
            crop,
            gelu,
        })
    }

    fn run(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        crop: (usize, usize),
        gelu: bool,
    ) -> Vec<f32> {
        let (cout, k, s) = (self.cout, self.k, self.stride);
        let (first, len) = crop;
        let out_plane = len * w;
        // Each (item, channel) plane starts as its bias.
        let mut out = filled_planes(n * cout, out_plane, |i| self.bias[i % cout]);
        // Input rows per gemm.
        let rows = (self.group_floats / (k * cout * w)).clamp(1, h);
        let mut taps = Reused::new(k * cout * rows * w);
        for item in 0..n {
            let xi = &x[item * self.cin * h * w..(item + 1) * self.cin * h * w];
            let oi = &mut out[item * cout * out_plane..(item + 1) * cout * out_plane];
            for j0 in (0..h).step_by(rows) {
                let jn = rows.min(h - j0);
                let cols = jn * w;
                let y = &mut taps[..k * cout * cols];
                // `[k·cout, cols]` = the weights `[k·cout, cin]` × the input's rows j0..
                // (`[cin, cols]` at row stride h·w).
                product(
                    MatMut::new(y, k * cout, cols, cols),
                    MatRef::new(&self.weight, k * cout, self.cin, self.cin),
                    MatRef::new(&xi[j0 * w..], self.cin, cols, h * w),
                    false,
                    Threads::All,
                );
                let y = &*y;
                oi.par_chunks_mut(out_plane)
                    .enumerate()
                    .for_each(|(o, dst)| {
                        for t in 0..k {
                            let src = &y[(t * cout + o) * cols..(t * cout + o + 1) * cols];
                            // Input row j0 + j, tap t lands on full output row (j0 + j)·s + t;
                            // keep the rows inside the crop.
                            let base = j0 * s + t;
                            let lo = first.saturating_sub(base).div_ceil(s).min(jn);
                            let hi = (first + len).saturating_sub(base).div_ceil(s).clamp(lo, jn);
                            for j in lo..hi {
                                let q = (j0 + j) * s + t - first;
                                if w == 1 {
                                    dst[q] += src[j];
                                } else {
                                    dst[q * w..(q + 1) * w]
                                        .iter_mut()
                                        .zip(&src[j * w..(j + 1) * w])
                                        .for_each(|(d, v)| *d += v);
                                }
                            }
                        }
                    });
            }
        }
        if gelu {
            out.par_chunks_mut(1 << 14).for_each(gelu_in_place);
        }
        out
    }
}

struct ConvTrOp<'a> {
    conv: &'a ConvTranspose,
    crop: (usize, usize),
    gelu: bool,
}

impl CustomOp1 for ConvTrOp<'_> {
    fn name(&self) -> &'static str {
        "roar-conv-transpose"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let conv = self.conv;
        if c != conv.cin {
            candle_core::bail!("conv_tr: {c} input channels, weights for {}", conv.cin);
        }
        let full = conv.output_rows(h);
        if self.crop.0 + self.crop.1 > full {
            candle_core::bail!("conv_tr: crop {:?} outside {full} output rows", self.crop);
        }
        let out = conv.run(contiguous(s, l)?, n, h, w, self.crop, self.gelu);
        Ok((
            CpuStorage::F32(out),
            Shape::from_dims(&[n, conv.cout, self.crop.1, w]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};
    use roar_testkit::tensor::assert_tensor_close;

    /// Uniform in [-1, 1) from a fixed seed (a small LCG: reproducible failures).
    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// PyTorch's definition, element by element.
    #[allow(clippy::too_many_arguments)]
    fn conv_reference(
        x: &[f32],
        (n, cin, h, w): (usize, usize, usize, usize),
        weight: &[f32],
        (cout, kh, kw): (usize, usize, usize),
        bias: &[f32],
        stride: (usize, usize),
        pad_h: (usize, usize),
        pad_w: (usize, usize),
    ) -> (Vec<f32>, usize, usize) {
        let ho = (h + pad_h.0 + pad_h.1 - kh) / stride.0 + 1;
        let wo = (w + pad_w.0 + pad_w.1 - kw) / stride.1 + 1;
        let mut out = vec![0f32; n * cout * ho * wo];
        for b in 0..n {
            for o in 0..cout {
                for i in 0..ho {
                    for j in 0..wo {
                        let mut acc = f64::from(bias[o]);
                        for c in 0..cin {
                            for a in 0..kh {
                                for e in 0..kw {
                                    let ih = (i * stride.0 + a) as isize - pad_h.0 as isize;
                                    let iw = (j * stride.1 + e) as isize - pad_w.0 as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                        continue;
                                    }
                                    let xv = x[((b * cin + c) * h + ih as usize) * w + iw as usize];
                                    let wv = weight[((o * cin + c) * kh + a) * kw + e];
                                    acc += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        out[((b * cout + o) * ho + i) * wo + j] = acc as f32;
                    }
                }
            }
        }
        (out, ho, wo)
    }

    #[allow(clippy::type_complexity)]
    const CASES: &[(
        &str,
        (usize, usize),
        (usize, usize),
        (usize, usize),
        (usize, usize),
        (usize, usize),
    )] = &[
        // name, (h, w), kernel, stride, pad_h, pad_w
        (
            "decoder rewrite 3x3",
            (9, 13),
            (3, 3),
            (1, 1),
            (1, 1),
            (1, 1),
        ),
        (
            "frequency conv 8x1 / 4",
            (32, 5),
            (8, 1),
            (4, 1),
            (2, 2),
            (0, 0),
        ),
        (
            "time conv 1x8 / 4, padded to the stride",
            (1, 61),
            (1, 8),
            (1, 4),
            (0, 0),
            (2, 5),
        ),
        ("time rewrite 1x3", (1, 50), (1, 3), (1, 1), (0, 0), (1, 1)),
        ("pointwise", (6, 7), (1, 1), (1, 1), (0, 0), (0, 0)),
    ];

    #[test]
    fn forward_matches_the_definition_with_skip_and_epilogues() {
        let (n, cin, cout) = (2, 5, 6);
        for (ci, &(name, (h, w), (kh, kw), stride, pad_h, pad_w)) in CASES.iter().enumerate() {
            let seed = 10 * ci as u64;
            let x = rand(&[n, cin, h, w], seed);
            let skip = rand(&[n, cin, h, w], seed + 1);
            let weight = rand(&[cout, cin, kh, kw], seed + 2);
            let bias = rand(&[cout], seed + 3);
            let summed: Vec<f32> = (&x + &skip)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let (reference, ho, wo) = conv_reference(
                &summed,
                (n, cin, h, w),
                &weight.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                (cout, kh, kw),
                &bias.to_vec1::<f32>().unwrap(),
                stride,
                pad_h,
                pad_w,
            );
            let reference = Tensor::from_vec(reference, (n, cout, ho, wo), &Device::Cpu).unwrap();
            // Tiny groups so that a group boundary falls inside rows and between items; the
            // 3x3 case also without Winograd, and with one tile row per Winograd block.
            for (group, winograd) in [
                (GROUP_FLOATS, None),
                (kh * kw * cin * 3, Some(false)),
                (GROUP_FLOATS, Some(true)),
            ] {
                let mut conv = Conv2d::new(&weight, &bias, stride, pad_h, pad_w).unwrap();
                conv.group_floats = group;
                match (winograd, &mut conv.winograd) {
                    (Some(false), wg) => *wg = None,
                    (Some(true), Some(wg)) => wg.block_floats = 1,
                    (Some(true), None) => continue,
                    (None, _) => {}
                }
                let plain = conv
                    .forward(&(&x + &skip).unwrap(), None, Epilogue::None)
                    .unwrap();
                let with_skip = conv.forward(&x, Some(&skip), Epilogue::None).unwrap();
                let gelu = conv.forward(&x, Some(&skip), Epilogue::Gelu).unwrap();
                let glu = conv.forward(&x, Some(&skip), Epilogue::Glu).unwrap();
                let what = format!("{name}, group {group}, winograd {winograd:?}");
                assert_tensor_close(&what, &plain, &reference, 1e-5);
                assert_tensor_close(&format!("{what}: skip"), &with_skip, &reference, 1e-5);
                let want_gelu = reference.gelu_erf().unwrap();
                assert_tensor_close(&format!("{what}: gelu"), &gelu, &want_gelu, 1e-5);
                let half = cout / 2;
                let want_glu = (reference.i((.., ..half)).unwrap()
                    * candle_nn::ops::sigmoid(&reference.i((.., half..)).unwrap()).unwrap())
                .unwrap();
                assert_eq!(glu.dims(), &[n, half, ho, wo], "{name}");
                assert_tensor_close(&format!("{what}: glu"), &glu, &want_glu, 1e-5);
            }
        }
    }

    #[test]
    fn transposed_matches_the_definition_inside_the_crop() {
        let (n, cin, cout, k, s) = (2, 5, 3, 8, 4);
        for (h, w) in [(9, 4), (23, 1)] {
            let x = rand(&[n, cin, h, w], 40 + h as u64);
            let weight = rand(&[cin, cout, k], 41);
            let bias = rand(&[cout], 42);
            let (xv, wv, bv): (Vec<f32>, Vec<f32>, Vec<f32>) = (
                x.flatten_all().unwrap().to_vec1().unwrap(),
                weight.flatten_all().unwrap().to_vec1().unwrap(),
                bias.to_vec1().unwrap(),
            );
            let full = (h - 1) * s + k;
            let mut reference = vec![0f64; n * cout * full * w];
            for b in 0..n {
                for o in 0..cout {
                    for q in 0..full {
                        for e in 0..w {
                            reference[((b * cout + o) * full + q) * w + e] = f64::from(bv[o]);
                        }
                    }
                    for c in 0..cin {
                        for j in 0..h {
                            for t in 0..k {
                                for e in 0..w {
                                    reference[((b * cout + o) * full + j * s + t) * w + e] +=
                                        f64::from(xv[((b * cin + c) * h + j) * w + e])
                                            * f64::from(wv[(c * cout + o) * k + t]);
                                }
                            }
                        }
                    }
                }
            }
            let reference: Vec<f32> = reference.iter().map(|v| *v as f32).collect();
            let reference = Tensor::from_vec(reference, (n, cout, full, w), &Device::Cpu).unwrap();
            for (crop, group) in [((0, full), GROUP_FLOATS), ((2, full - 4), k * cout * w * 2)] {
                let mut conv = ConvTranspose::new(&weight, &bias, s).unwrap();
                conv.group_floats = group;
                let want = reference.narrow(2, crop.0, crop.1).unwrap();
                for gelu in [false, true] {
                    let got = conv.forward(&x, crop, gelu).unwrap();
                    let want = if gelu {
                        want.gelu_erf().unwrap()
                    } else {
                        want.clone()
                    };
                    let what = format!("h {h} w {w} crop {crop:?} group {group} gelu {gelu}");
                    assert_tensor_close(&what, &got, &want, 1e-5);
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let conv = Conv2d::new(
            &rand(&[4, 3, 3, 3], 1),
            &rand(&[4], 2),
            (1, 1),
            (0, 0),
            (0, 0),
        )
        .unwrap();
        assert!(conv
            .forward(&rand(&[1, 2, 5, 5], 3), None, Epilogue::None)
            .is_err());
        assert!(conv
            .forward(&rand(&[1, 3, 2, 5], 3), None, Epilogue::None)
            .is_err());
        assert!(conv
            .forward(&rand(&[0, 3, 5, 5], 3), None, Epilogue::None)
            .is_err());
        let odd = Conv2d::new(
            &rand(&[3, 3, 1, 1], 1),
            &rand(&[3], 2),
            (1, 1),
            (0, 0),
            (0, 0),
        )
        .unwrap();
        assert!(odd
            .forward(&rand(&[1, 3, 2, 2], 3), None, Epilogue::Glu)
            .is_err());
        let tr = ConvTranspose::new(&rand(&[3, 2, 8], 1), &rand(&[2], 2), 4).unwrap();
        assert!(tr
            .forward(&rand(&[1, 3, 5, 1], 3), (4, 100), false)
            .is_err());
    }
}
