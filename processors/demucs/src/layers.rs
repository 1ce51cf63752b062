//! The convolutional building blocks of HTDemucs: encoder and decoder layers for the
//! frequency branch (kernels along frequency, `[B, C, F, T]`) and the time branch
//! (`[B, C, T]`), and the DConv residual branch they carry. Parameter names follow the
//! reference state dict (`encoder.0.conv.weight`, `decoder.1.dconv.layers.0.6.scale`, ...).

use candle_core::{Module, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};

use crate::conv::{self, Epilogue};
use crate::dconv::DConv;
use crate::device_conv::{Conv2dSame, FreqConv, FreqConvTr, TimeConvTr};
use crate::fast::{self, GroupNorm};

use crate::config::HTDemucsConfig;
use crate::Result;

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

/// Shared shape of one encoder/decoder level.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub cin: usize,
    pub cout: usize,
    pub norm: bool,
    pub dconv: bool,
    /// The fused CPU kernels ([`crate::conv`], [`crate::dconv`]) rather than candle's ops.
    pub fused: bool,
}

/// A layer's convolution: the fused CPU kernel, or candle ops on other devices.
enum Conv<D> {
    Cpu(conv::Conv2d),
    Device(D),
}

/// A layer's transposed convolution, likewise.
enum ConvTr<D> {
    Cpu(conv::ConvTranspose),
    Device(D),
}

/// The activation that follows a convolution (after its optional norm).
#[derive(Clone, Copy)]
enum Act {
    Gelu,
    Glu,
}

/// The fused CPU convolution, then the optional norm and `act`; with no norm the activation
/// runs inside the kernel. `extra`: zeros added after W (the time encoder's length rounding).
fn cpu_conv(
    c: &conv::Conv2d,
    x: &Tensor,
    skip: Option<&Tensor>,
    extra: usize,
    norm: &Option<GroupNorm>,
    act: Act,
) -> Result<Tensor> {
    let epilogue = match (norm, act) {
        (None, Act::Gelu) => Epilogue::Gelu,
        (None, Act::Glu) => Epilogue::Glu,
        (Some(_), _) => Epilogue::None,
    };
    let y = c.forward_padded(x, skip, extra, epilogue)?;
    Ok(match (norm, act) {
        (None, _) => y,
        (Some(n), Act::Gelu) => n.forward(&y, true)?,
        (Some(n), Act::Glu) => glu(&n.forward(&y, false)?)?,
    })
}

/// A `[cout, cin, k]` (time) or `[cout, cin, kh, kw]` (frequency) conv's weights and bias as
/// the CPU kernel, with the 1-D kernels laid along W.
fn cpu_conv_load(
    vb: VarBuilder,
    weight_shape: &[usize],
    stride: (usize, usize),
    pad: (usize, usize),
) -> Result<conv::Conv2d> {
    let mut weight = vb.get(weight_shape, "weight")?;
    if weight.rank() == 3 {
        weight = weight.unsqueeze(2)?;
    }
    let bias = vb.get(weight_shape[0], "bias")?;
    Ok(conv::Conv2d::new(
        &weight,
        &bias,
        stride,
        (pad.0, pad.0),
        (pad.1, pad.1),
    )?)
}

/// A transposed conv's `[cin, cout, k]` or `[cin, cout, k, 1]` weights as the CPU kernel.
fn cpu_conv_tr_load(
    vb: VarBuilder,
    weight_shape: &[usize],
    stride: usize,
) -> Result<conv::ConvTranspose> {
    let mut weight = vb.get(weight_shape, "weight")?;
    if weight.rank() == 4 {
        weight = weight.squeeze(3)?;
    }
    let bias = vb.get(weight_shape[1], "bias")?;
    Ok(conv::ConvTranspose::new(&weight, &bias, stride)?)
}

/// The decoders' transposed convolution, its norm, the crop of `pad` rows on each side of H
/// (`length` rows kept) and GELU unless `last`. On the CPU without a norm it is one kernel.
fn conv_tr_tail(
    c: &conv::ConvTranspose,
    y: &Tensor,
    norm: &Option<GroupNorm>,
    pad: usize,
    length: usize,
    last: bool,
) -> Result<Tensor> {
    if norm.is_none() {
        return Ok(c.forward(y, (pad, length), !last)?);
    }
    let full = c.output_rows(y.dim(2)?);
    let z = apply_norm(norm, c.forward(y, (0, full), false)?)?;
    let z = z.narrow(2, pad, length)?;
    Ok(if last {
        z.contiguous()?
    } else {
        fast::gelu_t(&z)?
    })
}

/// Frequency-branch encoder layer (`HEncLayer` with `freq=True`).
pub struct FreqEncoder {
    conv: Conv<FreqConv>,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    rewrite: Conv<Conv2dSame>,
    norm2: Option<GroupNorm>,
}

impl FreqEncoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        let kr = 1 + 2 * cfg.context_enc;
        let (conv, rewrite) = if s.fused {
            (
                Conv::Cpu(cpu_conv_load(
                    vb.pp("conv"),
                    &[s.cout, s.cin, k, 1],
                    (cfg.stride, 1),
                    (k / 4, 0),
                )?),
                Conv::Cpu(cpu_conv_load(
                    vb.pp("rewrite"),
                    &[2 * s.cout, s.cout, kr, kr],
                    (1, 1),
                    (kr / 2, kr / 2),
                )?),
            )
        } else {
            (
                Conv::Device(FreqConv::load(
                    vb.pp("conv"),
                    s.cin,
                    s.cout,
                    k,
                    cfg.stride,
                    k / 4,
                )?),
                Conv::Device(Conv2dSame::load(vb.pp("rewrite"), s.cout, 2 * s.cout, kr)?),
            )
        };
        Ok(Self {
            conv,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, s.cout)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cout, cfg, s.fused))
                .transpose()?,
            rewrite,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, 2 * s.cout)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.conv {
            Conv::Cpu(c) => cpu_conv(c, x, None, 0, &self.norm1, Act::Gelu)?,
            Conv::Device(c) => apply_norm_act(&self.norm1, c.forward(x)?, true)?,
        };
        let y = match &self.dconv {
            Some(d) => d.forward_freq(&y)?,
            None => y,
        };
        match &self.rewrite {
            Conv::Cpu(c) => cpu_conv(c, &y, None, 0, &self.norm2, Act::Glu),
            Conv::Device(c) => glu(&apply_norm(&self.norm2, c.forward(&y)?)?),
        }
    }
}

/// Time-branch encoder layer (`HEncLayer` with `freq=False`).
pub struct TimeEncoder {
    conv: Conv<Conv1d>,
    stride: usize,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    rewrite: Conv<Conv1d>,
    norm2: Option<GroupNorm>,
}

impl TimeEncoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        let kr = 1 + 2 * cfg.context_enc;
        let (conv, rewrite) = if s.fused {
            (
                Conv::Cpu(cpu_conv_load(
                    vb.pp("conv"),
                    &[s.cout, s.cin, k],
                    (1, cfg.stride),
                    (0, k / 4),
                )?),
                Conv::Cpu(cpu_conv_load(
                    vb.pp("rewrite"),
                    &[2 * s.cout, s.cout, kr],
                    (1, 1),
                    (0, kr / 2),
                )?),
            )
        } else {
            let conv_cfg = Conv1dConfig {
                padding: k / 4,
                stride: cfg.stride,
                ..Default::default()
            };
            let rw_cfg = Conv1dConfig {
                padding: kr / 2,
                ..Default::default()
            };
            (
                Conv::Device(conv1d(vb.pp("conv"), s.cin, s.cout, k, conv_cfg)?),
                Conv::Device(conv1d(vb.pp("rewrite"), s.cout, 2 * s.cout, kr, rw_cfg)?),
            )
        };
        Ok(Self {
            conv,
            stride: cfg.stride,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, s.cout)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cout, cfg, s.fused))
                .transpose()?,
            rewrite,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, 2 * s.cout)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The reference pads the input up to a multiple of the stride.
        let le = x.dim(D::Minus1)?;
        let extra = (self.stride - le % self.stride) % self.stride;
        let y = match &self.conv {
            Conv::Cpu(c) => {
                cpu_conv(c, &x.unsqueeze(2)?, None, extra, &self.norm1, Act::Gelu)?.squeeze(2)?
            }
            Conv::Device(c) => {
                let x = x.pad_with_zeros(D::Minus1, 0, extra)?;
                apply_norm_act(&self.norm1, c.forward(&x)?, true)?
            }
        };
        let y = match &self.dconv {
            Some(d) => d.forward(&y)?,
            None => y,
        };
        match &self.rewrite {
            Conv::Cpu(c) => {
                Ok(cpu_conv(c, &y.unsqueeze(2)?, None, 0, &self.norm2, Act::Glu)?.squeeze(2)?)
            }
            Conv::Device(c) => glu(&apply_norm(&self.norm2, c.forward(&y)?)?),
        }
    }
}

/// Frequency-branch decoder layer (`HDecLayer` with `freq=True`).
pub struct FreqDecoder {
    rewrite: Conv<Conv2dSame>,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    conv_tr: ConvTr<FreqConvTr>,
    norm2: Option<GroupNorm>,
    pad: usize,
    last: bool,
}

impl FreqDecoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, last: bool, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        let kr = 1 + 2 * cfg.context;
        let (rewrite, conv_tr) = if s.fused {
            (
                Conv::Cpu(cpu_conv_load(
                    vb.pp("rewrite"),
                    &[2 * s.cin, s.cin, kr, kr],
                    (1, 1),
                    (kr / 2, kr / 2),
                )?),
                ConvTr::Cpu(cpu_conv_tr_load(
                    vb.pp("conv_tr"),
                    &[s.cin, s.cout, k, 1],
                    cfg.stride,
                )?),
            )
        } else {
            (
                Conv::Device(Conv2dSame::load(vb.pp("rewrite"), s.cin, 2 * s.cin, kr)?),
                ConvTr::Device(FreqConvTr::load(
                    vb.pp("conv_tr"),
                    s.cin,
                    s.cout,
                    k,
                    cfg.stride,
                )?),
            )
        };
        Ok(Self {
            rewrite,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, 2 * s.cin)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cin, cfg, s.fused))
                .transpose()?,
            conv_tr,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, s.cout)?,
            pad: k / 4,
            last,
        })
    }

    pub fn forward(&self, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        let y = match &self.rewrite {
            Conv::Cpu(c) => cpu_conv(c, x, Some(skip), 0, &self.norm1, Act::Glu)?,
            Conv::Device(c) => glu(&apply_norm(&self.norm1, c.forward(&(x + skip)?)?)?)?,
        };
        let y = match &self.dconv {
            Some(d) => d.forward_freq(&y)?,
            None => y,
        };
        match &self.conv_tr {
            ConvTr::Cpu(c) => {
                let length = c.output_rows(y.dim(2)?) - 2 * self.pad;
                conv_tr_tail(c, &y, &self.norm2, self.pad, length, self.last)
            }
            ConvTr::Device(c) => {
                let z = apply_norm(&self.norm2, c.forward(&y)?)?;
                let f = z.dim(2)?;
                let z = z.narrow(2, self.pad, f - 2 * self.pad)?;
                Ok(if self.last {
                    z.contiguous()?
                } else {
                    fast::gelu_t(&z)?
                })
            }
        }
    }
}

/// Time-branch decoder layer (`HDecLayer` with `freq=False`).
pub struct TimeDecoder {
    rewrite: Conv<Conv1d>,
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    conv_tr: ConvTr<TimeConvTr>,
    norm2: Option<GroupNorm>,
    pad: usize,
    last: bool,
}

impl TimeDecoder {
    pub fn load(vb: VarBuilder, s: LayerSpec, last: bool, cfg: &HTDemucsConfig) -> Result<Self> {
        let k = cfg.kernel_size;
        let kr = 1 + 2 * cfg.context;
        let (rewrite, conv_tr) = if s.fused {
            (
                Conv::Cpu(cpu_conv_load(
                    vb.pp("rewrite"),
                    &[2 * s.cin, s.cin, kr],
                    (1, 1),
                    (0, kr / 2),
                )?),
                ConvTr::Cpu(cpu_conv_tr_load(
                    vb.pp("conv_tr"),
                    &[s.cin, s.cout, k],
                    cfg.stride,
                )?),
            )
        } else {
            let rw_cfg = Conv1dConfig {
                padding: kr / 2,
                ..Default::default()
            };
            (
                Conv::Device(conv1d(vb.pp("rewrite"), s.cin, 2 * s.cin, kr, rw_cfg)?),
                ConvTr::Device(TimeConvTr::load(
                    vb.pp("conv_tr"),
                    s.cin,
                    s.cout,
                    k,
                    cfg.stride,
                )?),
            )
        };
        Ok(Self {
            rewrite,
            norm1: norm(vb.pp("norm1"), s.norm, cfg.norm_groups, 2 * s.cin)?,
            dconv: s
                .dconv
                .then(|| DConv::load(vb.pp("dconv"), s.cin, cfg, s.fused))
                .transpose()?,
            conv_tr,
            norm2: norm(vb.pp("norm2"), s.norm, cfg.norm_groups, s.cout)?,
            pad: k / 4,
            last,
        })
    }

    /// `length`: the time length this level had on the way down.
    pub fn forward(&self, x: &Tensor, skip: &Tensor, length: usize) -> Result<Tensor> {
        let y = match &self.rewrite {
            Conv::Cpu(c) => cpu_conv(
                c,
                &x.unsqueeze(2)?,
                Some(&skip.unsqueeze(2)?),
                0,
                &self.norm1,
                Act::Glu,
            )?
            .squeeze(2)?,
            Conv::Device(c) => glu(&apply_norm(&self.norm1, c.forward(&(x + skip)?)?)?)?,
        };
        let y = match &self.dconv {
            Some(d) => d.forward(&y)?,
            None => y,
        };
        match &self.conv_tr {
            ConvTr::Cpu(c) => {
                let z = conv_tr_tail(
                    c,
                    &y.unsqueeze(3)?,
                    &self.norm2,
                    self.pad,
                    length,
                    self.last,
                )?;
                Ok(z.squeeze(3)?)
            }
            ConvTr::Device(c) => {
                let z = apply_norm(&self.norm2, c.forward(&y)?)?;
                let z = z.narrow(D::Minus1, self.pad, length)?;
                Ok(if self.last {
                    z.contiguous()?
                } else {
                    fast::gelu_t(&z)?
                })
            }
        }
    }
}
