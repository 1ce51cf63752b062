//! The convolutional building blocks of HTDemucs: encoder and decoder layers for the
//! frequency branch (kernels along frequency, `[B, C, F, T]`) and the time branch
//! (`[B, C, T]`), and the DConv residual branch they carry. Parameter names follow the
//! reference state dict (`encoder.0.conv.weight`, `decoder.1.dconv.layers.0.6.scale`, ...).

use candle_core::{Module, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};

use crate::fast::{self, GroupNorm};

use crate::config::HTDemucsConfig;
use crate::Result;

/// Frequency-axis convolution: the reference's `Conv2d` with a `[K, 1]` kernel. With the
/// kernel a multiple of the stride (every HTDemucs level), the taps are gathered from the
/// padded input viewed as `[C, F/stride, stride, T]` into one `[K·C, F'·T]` matrix and the
/// whole level is one gemm in the tensor's own layout; otherwise it runs as a 1-D convolution
/// over frequency with time folded into the batch.
struct FreqConv {
    /// `[cout, cin, K]`
    weight: Tensor,
    /// `[cout, K * cin]`, tap major.
    w_taps: Tensor,
    bias: Tensor,
    stride: usize,
    pad: usize,
}

impl FreqConv {
    fn load(
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

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
struct FreqConvTr {
    /// `[cout * K, cin]`
    w_taps: Tensor,
    /// `[cin, cout, K]` for kernels that are not a multiple of the stride.
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    k: usize,
}

impl FreqConvTr {
    fn load(vb: VarBuilder, cin: usize, cout: usize, k: usize, stride: usize) -> Result<Self> {
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

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
struct TimeConvTr {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl TimeConvTr {
    fn load(vb: VarBuilder, cin: usize, cout: usize, k: usize, stride: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((cin, cout, k), "weight")?,
            bias: vb.get(cout, "bias")?,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
struct Conv2dSame {
    /// `rows[a]`: `[cout, k * cin]`, the weights of taps (a, 0..k), time tap major.
    rows: Vec<Tensor>,
    bias: Tensor,
    k: usize,
}

impl Conv2dSame {
    fn load(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Self> {
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

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
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

fn conv1d(vb: VarBuilder, cin: usize, cout: usize, k: usize, cfg: Conv1dConfig) -> Result<Conv1d> {
    Ok(candle_nn::conv1d(cin, cout, k, cfg, vb)?)
}

fn glu(x: &Tensor) -> Result<Tensor> {
    Ok(fast::glu(x)?)
}

/// An optional GroupNorm (`nn.Identity` in the reference when off).
fn norm(vb: VarBuilder, on: bool, groups: usize, channels: usize) -> Result<Option<GroupNorm>> {
    if !on {
        return Ok(None);
    }
    Ok(Some(GroupNorm::load(vb, groups, channels)?))
}

/// The optional norm, then GELU when `gelu` (fused on the CPU).
fn apply_norm_act(n: &Option<GroupNorm>, x: Tensor, gelu: bool) -> Result<Tensor> {
    Ok(match (n, gelu) {
        (Some(n), g) => n.forward(&x, g)?,
        (None, true) => fast::gelu_t(&x)?,
        (None, false) => x,
    })
}

fn apply_norm(n: &Option<GroupNorm>, x: Tensor) -> Result<Tensor> {
    apply_norm_act(n, x, false)
}

/// The DConv residual branch: per layer, a dilated conv down to `channels / compress`,
/// GroupNorm, GELU, a 1x1 conv back up to twice the channels, GroupNorm, GLU and a learnt
/// per-channel scale, added to the input. Works on `[N, C, T]`.
pub struct DConv {
    layers: Vec<DConvLayer>,
}

/// A stride-1 "same" conv that runs on [`fast::ConvRows`] on the CPU and candle elsewhere.
struct RowConv {
    candle: Conv1d,
    fast: Option<fast::ConvRows>,
}

impl RowConv {
    fn load(vb: VarBuilder, cin: usize, cout: usize, k: usize, dilation: usize) -> Result<Self> {
        let cfg = Conv1dConfig {
            padding: dilation * (k / 2),
            dilation,
            ..Default::default()
        };
        let candle = conv1d(vb, cin, cout, k, cfg)?;
        let fast = match candle.bias() {
            Some(b) if candle.weight().device().is_cpu() => {
                Some(fast::ConvRows::new(candle.weight(), b, dilation)?)
            }
            _ => None,
        };
        Ok(Self { candle, fast })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.fast {
            Some(f) if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 => {
                Ok(f.forward(x)?)
            }
            _ => Ok(self.candle.forward(x)?),
        }
    }
}

struct DConvLayer {
    conv: RowConv,
    norm1: GroupNorm,
    proj: RowConv,
    norm2: GroupNorm,
    scale: Tensor,
}

impl DConv {
    pub fn load(vb: VarBuilder, channels: usize, cfg: &HTDemucsConfig) -> Result<Self> {
        let hidden = channels / cfg.dconv_comp;
        let vb = vb.pp("layers");
        let layers = (0..cfg.dconv_depth)
            .map(|d| {
                let vb = vb.pp(d.to_string());
                let dilation = 1usize << d;
                Ok(DConvLayer {
                    conv: RowConv::load(vb.pp("0"), channels, hidden, 3, dilation)?,
                    norm1: GroupNorm::load(vb.pp("1"), 1, hidden)?,
                    proj: RowConv::load(vb.pp("3"), hidden, 2 * channels, 1, 1)?,
                    norm2: GroupNorm::load(vb.pp("4"), 1, 2 * channels)?,
                    scale: vb
                        .pp("6")
                        .get(channels, "scale")?
                        .reshape((1, channels, 1))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            let y = l.norm1.forward(&l.conv.forward(&x)?, true)?;
            let y = glu(&l.norm2.forward(&l.proj.forward(&y)?, false)?)?;
            x = (x + y.broadcast_mul(&l.scale)?)?;
        }
        Ok(x)
    }
}

/// Runs a DConv over the time axis of a frequency-branch tensor `[B, C, F, T]`.
fn dconv_freq(d: &DConv, y: &Tensor) -> Result<Tensor> {
    let (b, c, f, t) = y.dims4()?;
    let z = y.permute((0, 2, 1, 3))?.reshape((b * f, c, t))?;
    let z = d.forward(&z)?;
    Ok(z.reshape((b, f, c, t))?
        .permute((0, 2, 1, 3))?
        .contiguous()?)
}

/// Shared shape of one encoder/decoder level.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub cin: usize,
    pub cout: usize,
    pub norm: bool,
    pub dconv: bool,
}

/// Frequency-branch encoder layer (`HEncLayer` with `freq=True`).
pub struct FreqEncoder {
    conv: FreqConv,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    rewrite: Conv2dSame,
    norm2: Option<GroupNorm>,
}

impl FreqEncoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        Ok(Self {
            conv: FreqConv::load(vb.pp("conv"), s.cin, s.cout, k, cfg.stride, k / 4)?,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, s.cout)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cout, cfg))
                .transpose()?,
            rewrite: Conv2dSame::load(
                vb.pp("rewrite"),
                s.cout,
                2 * s.cout,
                1 + 2 * cfg.context_enc,
            )?,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, 2 * s.cout)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = apply_norm_act(&self.norm1, self.conv.forward(x)?, true)?;
        let y = match &self.dconv {
            Some(d) => dconv_freq(d, &y)?,
            None => y,
        };
        glu(&apply_norm(&self.norm2, self.rewrite.forward(&y)?)?)
    }
}

/// Time-branch encoder layer (`HEncLayer` with `freq=False`).
pub struct TimeEncoder {
    conv: Conv1d,
    stride: usize,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    rewrite: Conv1d,
    norm2: Option<GroupNorm>,
}

impl TimeEncoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        let conv_cfg = Conv1dConfig {
            padding: k / 4,
            stride: cfg.stride,
            ..Default::default()
        };
        let ctx = cfg.context_enc;
        let rw_cfg = Conv1dConfig {
            padding: ctx,
            ..Default::default()
        };
        Ok(Self {
            conv: conv1d(vb.pp("conv"), s.cin, s.cout, k, conv_cfg)?,
            stride: cfg.stride,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, s.cout)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cout, cfg))
                .transpose()?,
            rewrite: conv1d(vb.pp("rewrite"), s.cout, 2 * s.cout, 1 + 2 * ctx, rw_cfg)?,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, 2 * s.cout)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let le = x.dim(D::Minus1)?;
        let x = if le % self.stride != 0 {
            x.pad_with_zeros(D::Minus1, 0, self.stride - le % self.stride)?
        } else {
            x.clone()
        };
        let y = apply_norm_act(&self.norm1, self.conv.forward(&x)?, true)?;
        let y = match &self.dconv {
            Some(d) => d.forward(&y)?,
            None => y,
        };
        glu(&apply_norm(&self.norm2, self.rewrite.forward(&y)?)?)
    }
}

/// Frequency-branch decoder layer (`HDecLayer` with `freq=True`).
pub struct FreqDecoder {
    rewrite: Conv2dSame,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    conv_tr: FreqConvTr,
    norm2: Option<GroupNorm>,
    pad: usize,
    last: bool,
}

impl FreqDecoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, last: bool, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        Ok(Self {
            rewrite: Conv2dSame::load(vb.pp("rewrite"), s.cin, 2 * s.cin, 1 + 2 * cfg.context)?,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, 2 * s.cin)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cin, cfg))
                .transpose()?,
            conv_tr: FreqConvTr::load(vb.pp("conv_tr"), s.cin, s.cout, k, cfg.stride)?,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, s.cout)?,
            pad: k / 4,
            last,
        })
    }

    pub fn forward(&self, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        let x = (x + skip)?;
        let y = glu(&apply_norm(&self.norm1, self.rewrite.forward(&x)?)?)?;
        let y = match &self.dconv {
            Some(d) => dconv_freq(d, &y)?,
            None => y,
        };
        let z = apply_norm(&self.norm2, self.conv_tr.forward(&y)?)?;
        let f = z.dim(2)?;
        let z = z.narrow(2, self.pad, f - 2 * self.pad)?;
        Ok(if self.last {
            z.contiguous()?
        } else {
            fast::gelu_t(&z)?
        })
    }
}

/// Time-branch decoder layer (`HDecLayer` with `freq=False`).
pub struct TimeDecoder {
    rewrite: Conv1d,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    conv_tr: TimeConvTr,
    norm2: Option<GroupNorm>,
    pad: usize,
    last: bool,
}

impl TimeDecoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, last: bool, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        let ctx = cfg.context;
        let rw_cfg = Conv1dConfig {
            padding: ctx,
            ..Default::default()
        };
        Ok(Self {
            rewrite: conv1d(vb.pp("rewrite"), s.cin, 2 * s.cin, 1 + 2 * ctx, rw_cfg)?,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, 2 * s.cin)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cin, cfg))
                .transpose()?,
            conv_tr: TimeConvTr::load(vb.pp("conv_tr"), s.cin, s.cout, k, cfg.stride)?,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, s.cout)?,
            pad: k / 4,
            last,
        })
    }

    /// `length`: the time length this level had on the way down.
    pub fn forward(&self, x: &Tensor, skip: &Tensor, length: usize) -> Result<Tensor> {
        let x = (x + skip)?;
        let y = glu(&apply_norm(&self.norm1, self.rewrite.forward(&x)?)?)?;
        let y = match &self.dconv {
            Some(d) => d.forward(&y)?,
            None => y,
        };
        let z = apply_norm(&self.norm2, self.conv_tr.forward(&y)?)?;
        let z = z.narrow(D::Minus1, self.pad, length)?;
        Ok(if self.last {
            z.contiguous()?
        } else {
            fast::gelu_t(&z)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn row_conv_matches_candle_for_many_short_and_one_long_item() {
        let dev = Device::Cpu;
        for (n, t, k, dil) in [(9, 50, 3, 2), (1, 9000, 3, 1), (4, 33, 1, 1)] {
            let x = Tensor::randn(0f32, 1., (n, 5, t), &dev).unwrap();
            let w = Tensor::randn(0f32, 1., (7, 5, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1., 7, &dev).unwrap();
            let want = x
                .conv1d(&w, dil * (k / 2), 1, dil, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, 7, 1)).unwrap())
                .unwrap();
            let got = fast::ConvRows::new(&w, &b, dil)
                .unwrap()
                .forward(&x)
                .unwrap();
            let d: f32 = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-4, "n{n} t{t} k{k}: {d}");
        }
    }

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
