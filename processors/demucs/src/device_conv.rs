//! The encoders' and decoders' convolutions as candle ops, for devices other than the CPU
//! (where [`crate::conv`]'s fused kernels run instead): frequency convolutions and transposed
//! convolutions as gemms in the tensor's own layout, the decoder's k×k rewrite as shifted
//! gemms, and a transposed 1-D convolution that is right for batches (the iSTFT's overlap-add
//! uses it on every device).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::Result;

/// Frequency-axis convolution: the reference's `Conv2d` with a `[K, 1]` kernel. With the
/// kernel a multiple of the stride (every HTDemucs level), the taps are gathered from the
/// padded input viewed as `[C, F/stride, stride, T]` into one `[K·C, F'·T]` matrix and the
/// whole level is one gemm in the tensor's own layout; otherwise it runs as a 1-D convolution
/// over frequency with time folded into the batch.
pub(crate) struct FreqConv {
    /// `[cout, cin, K]`
    weight: Tensor,
    /// `[cout, K * cin]`, tap major.
    w_taps: Tensor,
    bias: Tensor,
    stride: usize,
    pad: usize,
}

impl FreqConv {
    pub(crate) fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let weight = vb.get((cout, cin, k, 1), "weight")?.squeeze(3)?;
        let w_taps = weight
            .permute((0, 2, 1))?
            .contiguous()?
            .reshape((cout, k * cin))?;
        Ok(Self {
            weight,
            w_taps,
            bias: vb.get(cout, "bias")?,
            stride,
            pad,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        let (co, _, k) = self.weight.dims3()?;
        let (s, pad) = (self.stride, self.pad);
        let fo = (f + 2 * pad - k) / s + 1;
        let m = k / s;
        let total = s * (fo + m - 1);
        if !k.is_multiple_of(s) || total < f + pad {
            let x = x.permute((0, 3, 1, 2))?.reshape((b * t, c, f))?;
            let y = x.conv1d(&self.weight, pad, s, 1, 1)?;
            let y = y.broadcast_add(&self.bias.reshape((1, (), 1))?)?;
            return Ok(y
                .reshape((b, t, co, fo))?
                .permute((0, 2, 3, 1))?
                .contiguous()?);
        }
        let mut items = Vec::with_capacity(b);
        for i in 0..b {
            let xp = x
                .get(i)?
                .pad_with_zeros(1, pad, total - f - pad)?
                .reshape((c, total / s, s, t))?;
            let mut taps = Vec::with_capacity(k);
            for q in 0..m {
                for r in 0..s {
                    taps.push(xp.narrow(1, q, fo)?.narrow(2, r, 1)?.squeeze(2)?);
                }
            }
            let cols = Tensor::cat(&taps, 0)?.reshape((k * c, fo * t))?;
            items.push(self.w_taps.matmul(&cols)?.reshape((co, fo, t))?);
        }
        let y = Tensor::stack(&items, 0)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)
    }
}

/// Frequency-axis transposed convolution (`ConvTranspose2d` with a `[K, 1]` kernel), done in
/// the tensor's own layout: one gemm of all taps against `[C, F·T]`, then an overlap-add of
/// the `K / stride` tap blocks along frequency (no permutes of the input).
pub(crate) struct FreqConvTr {
    /// `[cout * K, cin]`
    w_taps: Tensor,
    /// `[cin, cout, K]` for kernels that are not a multiple of the stride.
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    k: usize,
}

impl FreqConvTr {
    pub(crate) fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        let weight = vb.get((cin, cout, k, 1), "weight")?.squeeze(3)?;
        let w_taps = weight
            .permute((1, 2, 0))?
            .contiguous()?
            .reshape((cout * k, cin))?;
        Ok(Self {
            w_taps,
            weight,
            bias: vb.get(cout, "bias")?,
            stride,
            k,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        let co = self.w_taps.dim(0)? / self.k;
        let s = self.stride;
        if !self.k.is_multiple_of(s) {
            let x = x.permute((0, 3, 1, 2))?.reshape((b * t, c, f))?;
            let y = conv_transpose1d(&x, &self.weight, s)?;
            let y = y.broadcast_add(&self.bias.reshape((1, (), 1))?)?;
            let (_, co, fo) = y.dims3()?;
            return Ok(y
                .reshape((b, t, co, fo))?
                .permute((0, 2, 3, 1))?
                .contiguous()?);
        }
        let m = self.k / s;
        let mut items = Vec::with_capacity(b);
        for i in 0..b {
            let cols = self
                .w_taps
                .matmul(&x.get(i)?.reshape((c, f * t))?)?
                .reshape((co, m, s, f, t))?;
            let mut out: Option<Tensor> = None;
            for r in 0..m {
                // Tap block r of input row j lands on output rows (j + r) * s .. + s.
                let part = cols
                    .narrow(1, r, 1)?
                    .squeeze(1)?
                    .transpose(1, 2)?
                    .pad_with_zeros(1, r, m - 1 - r)?;
                out = Some(match out {
                    Some(o) => (o + part)?,
                    None => part,
                });
            }
            let out = out.expect("kernel at least one stride long");
            items.push(out.reshape((co, (f + m - 1) * s, t))?);
        }
        let y = Tensor::stack(&items, 0)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)
    }
}

/// Time-axis transposed convolution (`ConvTranspose1d`).
pub(crate) struct TimeConvTr {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl TimeConvTr {
    pub(crate) fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((cin, cout, k), "weight")?,
            bias: vb.get(cout, "bias")?,
            stride,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv_transpose1d(x, &self.weight, self.stride)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1))?)?)
    }
}

/// Transposed 1-D convolution without bias: `x` `[N, Cin, L]`, `w` `[Cin, Cout, K]` →
/// `[N, Cout, (L - 1) * stride + K]`. candle 0.11's CPU kernel mixes up batch items when
/// N > 1, and the frequency branch folds time into the batch, so this does it as one matmul
/// into columns followed by an overlap-add of the `K / stride` column blocks (K a multiple of
/// the stride, as in every HTDemucs layer).
pub fn conv_transpose1d(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (n, ci, l) = x.dims3()?;
    let (_, co, k) = w.dims3()?;
    if k % stride != 0 {
        // Not an HTDemucs shape; run item by item, where candle is right.
        let items = (0..n)
            .map(|i| x.narrow(0, i, 1)?.conv_transpose1d(w, 0, 0, stride, 1, 1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        return Ok(Tensor::cat(&items, 0)?);
    }
    let m = k / stride;
    let cols = x
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n * l, ci))?
        .matmul(&w.reshape((ci, co * k))?)?
        .reshape((n, l, co, m, stride))?;
    let mut out: Option<Tensor> = None;
    for r in 0..m {
        let part = cols
            .narrow(3, r, 1)?
            .squeeze(3)?
            .pad_with_zeros(1, r, m - 1 - r)?;
        out = Some(match out {
            Some(o) => (o + part)?,
            None => part,
        });
    }
    let out = out.expect("kernel at least one stride long");
    Ok(out
        .permute((0, 2, 1, 3))?
        .reshape((n, co, (l + m - 1) * stride))?)
}

/// A 2-D convolution with a square kernel and "same" padding (the decoder's rewrite over
/// frequency and time), or a 1x1 one run as a channel matmul.
///
/// The k×k case avoids a full im2col matrix (k² times the input, 300 MB for the outer decoder
/// of the released models). On the zero-padded input flattened to `[C, (F+2p)·(T+2p)]`, a tap
/// (a, b) is a shifted window of that buffer; the k time taps of a row are stacked into the
/// contraction (`[k·C, ·]`, k times the input), so each frequency tap is one gemm with a
/// k-times deeper contraction, and the few columns that wrap across rows are dropped.
pub(crate) struct Conv2dSame {
    /// `rows[a]`: `[cout, k * cin]`, the weights of taps (a, 0..k), time tap major.
    rows: Vec<Tensor>,
    bias: Tensor,
    k: usize,
}

impl Conv2dSame {
    pub(crate) fn load(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Self> {
        let w = vb.get((cout, cin, k, k), "weight")?;
        let rows = (0..k)
            .map(|a| {
                // [cout, cin, k(b)] -> [cout, k(b), cin] -> [cout, k * cin]
                Ok(w.narrow(2, a, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((cout, k * cin))?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            rows,
            bias: vb.get(cout, "bias")?,
            k,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        let co = self.rows[0].dim(0)?;
        let k = self.k;
        if k == 1 {
            let y = self.rows[0].broadcast_matmul(&x.reshape((b, c, f * t))?)?;
            return Ok(y
                .reshape((b, co, f, t))?
                .broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?);
        }
        let p = k / 2;
        let (fp, tp) = (f + 2 * p, t + 2 * p);
        let mut items = Vec::with_capacity(b);
        for i in 0..b {
            let xp = x
                .get(i)?
                .pad_with_zeros(1, p, p)?
                .pad_with_zeros(2, p, p)?
                .reshape((c, fp * tp))?
                .pad_with_zeros(1, 0, 2 * p)?;
            // Time taps stacked: row block bb holds the buffer shifted by bb.
            let width = fp * tp;
            let stacked = Tensor::cat(
                &(0..k)
                    .map(|bb| xp.narrow(1, bb, width))
                    .collect::<candle_core::Result<Vec<_>>>()?,
                0,
            )?;
            let cols = f * tp;
            let mut y: Option<Tensor> = None;
            for (a, w) in self.rows.iter().enumerate() {
                let part = w.matmul(&stacked.narrow(1, a * tp, cols)?)?;
                y = Some(match y {
                    Some(y) => (y + part)?,
                    None => part,
                });
            }
            let y = y.expect("k >= 1").reshape((co, f, tp))?.narrow(2, 0, t)?;
            items.push(y);
        }
        let y = Tensor::stack(&items, 0)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn transposed_conv_matches_the_definition_for_every_batch_item() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (5, 6, 9), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (6, 4, 8), &dev).unwrap();
        let y = conv_transpose1d(&x, &w, 4).unwrap();
        assert_eq!(y.dims(), &[5, 4, 40]);
        let xv: Vec<Vec<Vec<f32>>> = x.to_vec3().unwrap();
        let wv: Vec<Vec<Vec<f32>>> = w.to_vec3().unwrap();
        let yv: Vec<Vec<Vec<f32>>> = y.to_vec3().unwrap();
        for (b, yb) in yv.iter().enumerate() {
            for (o, row) in yb.iter().enumerate() {
                for (n, got) in row.iter().enumerate() {
                    let mut want = 0f32;
                    for (c, xc) in xv[b].iter().enumerate() {
                        for (i, xi) in xc.iter().enumerate() {
                            if n >= i * 4 && n - i * 4 < 8 {
                                want += xi * wv[c][o][n - i * 4];
                            }
                        }
                    }
                    assert!((want - got).abs() < 1e-4, "b{b} o{o} n{n}: {want} vs {got}");
                }
            }
        }
    }
}
