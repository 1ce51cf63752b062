//! EnCodec's SEANet building blocks as the reference defines them: weight-normed convolutions
//! that pad themselves ("same" output length, reflect padding by default, non-causal split of
//! the padding), transposed convolutions trimmed back to `stride ×` their input, residual
//! blocks, and the two-layer LSTM with a skip connection.

use candle_core::{Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::EncodecConfig;
use crate::kernels::{exp, linear};
use crate::Result;

/// `g · v / ‖v‖`, the norm taken per slice of the first dimension (PyTorch's `weight_norm`,
/// dim 0): output channels for convolutions, input channels for transposed ones.
fn weight_norm(vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    let g = vb.get((shape.0, 1, 1), "weight_g")?;
    let v = vb.get(shape, "weight_v")?;
    let norm = v.sqr()?.sum_keepdim((1, 2))?.sqrt()?;
    Ok(v.broadcast_mul(&g)?.broadcast_div(&norm)?)
}

#[derive(Clone, Copy)]
pub(crate) struct Padding {
    causal: bool,
    reflect: bool,
    trim_right_ratio: f64,
}

impl Padding {
    pub(crate) fn of(cfg: &EncodecConfig) -> Self {
        Self {
            causal: cfg.use_causal_conv,
            reflect: cfg.pad_mode == "reflect",
            trim_right_ratio: cfg.trim_right_ratio,
        }
    }
}

pub(crate) struct Conv {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: Padding,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pad: Padding,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        Ok(Self {
            weight: weight_norm(&vb, (cout, cin, kernel))?,
            bias: vb.get(cout, "bias")?,
            kernel,
            stride,
            dilation,
            pad,
        })
    }

    fn effective_kernel(&self) -> usize {
        (self.kernel - 1) * self.dilation + 1
    }

    /// Samples of context this convolution reads on either side (its larger padding).
    pub(crate) fn reach(&self) -> usize {
        (self.effective_kernel() - self.stride).div_ceil(2)
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let len = x.dim(D::Minus1)?;
        let k = self.effective_kernel();
        let total = k - self.stride;
        // Extra right padding so that the last window is complete (`pad_for_conv1d`).
        let frames = ((len + total) as f64 - k as f64) / self.stride as f64 + 1.0;
        let ideal = (frames.ceil() as i64 - 1) * self.stride as i64 + k as i64 - total as i64;
        let extra = (ideal - len as i64).max(0) as usize;
        let (left, right) = if self.pad.causal {
            (total, extra)
        } else {
            (total - total / 2, total / 2 + extra)
        };
        let x = pad1d(x, left, right, self.pad.reflect)?;
        let y = x.conv1d(&self.weight, 0, self.stride, self.dilation, 1)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1))?)?)
    }
}

/// Pads the last dimension; reflect as the reference's `_pad1d`, which first adds zeros on the
/// right when the input is too short to reflect.
pub(crate) fn pad1d(x: &Tensor, left: usize, right: usize, reflect: bool) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    if !reflect {
        return Ok(x.pad_with_zeros(D::Minus1, left, right)?);
    }
    let len = x.dim(D::Minus1)?;
    let max = left.max(right);
    let (x, extra) = if len <= max {
        (
            x.pad_with_zeros(D::Minus1, 0, max - len + 1)?,
            max - len + 1,
        )
    } else {
        (x.clone(), 0)
    };
    let n = len + extra;
    let idx: Vec<u32> = (0..left)
        .map(|i| (left - i) as u32)
        .chain((0..n).map(|i| i as u32))
        .chain((0..right).map(|i| (n - 2 - i) as u32))
        .collect();
    let keep = idx.len() - extra;
    let idx = Tensor::from_vec(idx, keep + extra, x.device())?;
    Ok(x.index_select(&idx, x.rank() - 1)?
        .narrow(D::Minus1, 0, keep)?)
}

pub(crate) struct ConvTranspose {
    /// `[in, out, kernel]` as PyTorch stores it.
    weight: Tensor,
    bias: Tensor,
    cout: usize,
    kernel: usize,
    stride: usize,
    pad: Padding,
}

impl ConvTranspose {
    pub(crate) fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        pad: Padding,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        Ok(Self {
            weight: weight_norm(&vb, (cin, cout, kernel))?,
            bias: vb.get(cout, "bias")?,
            cout,
            kernel,
            stride,
            pad,
        })
    }

    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    pub(crate) fn kernel(&self) -> usize {
        self.kernel
    }

    /// `[1, in, T]` → `[1, out, stride · T]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(D::Minus1)?;
        let (s, k) = (self.stride, self.kernel);
        let y = if k == 2 * s {
            // One matrix product (every tap of every input sample) and an overlap-add of the
            // two halves of the kernel: the first half lands on its own frame, the second on
            // the next. candle's CPU transposed convolution is a direct loop; this is a gemm.
            let cin = self.weight.dim(0)?;
            let w = self.weight.reshape((cin, self.cout * k))?.t()?;
            let cols = w.matmul(&x.i(0)?)?.reshape((self.cout, 2, s, t))?;
            let a = cols.i((.., 0))?.pad_with_zeros(D::Minus1, 0, 1)?;
            let b = cols.i((.., 1))?.pad_with_zeros(D::Minus1, 1, 0)?;
            (a + b)?
                .transpose(1, 2)?
                .reshape((1, self.cout, (t + 1) * s))?
        } else {
            x.conv_transpose1d(&self.weight, 0, 0, s, 1, 1)?
        };
        let y = y.broadcast_add(&self.bias.reshape((1, (), 1))?)?;
        let total = k - s;
        let right = if self.pad.causal {
            (total as f64 * self.pad.trim_right_ratio).ceil() as usize
        } else {
            total / 2
        };
        let left = total - right;
        let len = y.dim(D::Minus1)?;
        Ok(y.narrow(D::Minus1, left, len - left - right)?)
    }
}

pub(crate) struct ResBlock {
    convs: Vec<Conv>,
    shortcut: Option<Conv>,
}

impl ResBlock {
    pub(crate) fn load(
        vb: VarBuilder,
        cfg: &EncodecConfig,
        dim: usize,
        dilations: [usize; 2],
    ) -> Result<Self> {
        let pad = Padding::of(cfg);
        let hidden = dim / cfg.compress;
        let kernels = [cfg.residual_kernel_size, 1];
        let mut convs = Vec::new();
        for (i, (k, d)) in kernels.iter().zip(dilations).enumerate() {
            let cin = if i == 0 { dim } else { hidden };
            let cout = if i == 1 { dim } else { hidden };
            // `block` alternates ELU (even indices) and convolution (odd).
            convs.push(Conv::load(
                vb.pp(format!("block.{}", 2 * i + 1)),
                cin,
                cout,
                *k,
                1,
                d,
                pad,
            )?);
        }
        let shortcut = if cfg.use_conv_shortcut {
            Some(Conv::load(vb.pp("shortcut"), dim, dim, 1, 1, 1, pad)?)
        } else {
            None
        };
        Ok(Self { convs, shortcut })
    }

    pub(crate) fn reach(&self) -> usize {
        self.convs.iter().map(Conv::reach).sum()
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for c in &self.convs {
            y = c.forward(&y.elu(1.0)?)?;
        }
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        Ok((skip + y)?)
    }
}

/// `nn.LSTM(dim, dim, layers)` over time plus the input (the reference's `EncodecLSTM`). The
/// input projections of all steps are one matrix product on the device; the recurrence runs
/// on the CPU (a step is one small matrix-vector product, too little for a GPU launch).
pub(crate) struct Lstm {
    dim: usize,
    /// Per layer: `W_ih` on the device, `b_ih + b_hh`, and `W_hh` on the CPU.
    layers: Vec<(Tensor, Tensor, Vec<f32>)>,
}

impl Lstm {
    pub(crate) fn load(vb: VarBuilder, dim: usize, layers: usize) -> Result<Self> {
        let vb = vb.pp("lstm");
        let mut out = Vec::with_capacity(layers);
        for l in 0..layers {
            let w_ih = vb.get((4 * dim, dim), &format!("weight_ih_l{l}"))?;
            let w_hh = vb.get((4 * dim, dim), &format!("weight_hh_l{l}"))?;
            let b = (vb.get(4 * dim, &format!("bias_ih_l{l}"))?
                + vb.get(4 * dim, &format!("bias_hh_l{l}"))?)?;
            out.push((w_ih, b, w_hh.flatten_all()?.to_vec1::<f32>()?));
        }
        Ok(Self { dim, layers: out })
    }

    /// `[1, dim, T]` → `[1, dim, T]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let device: Device = x.device().clone();
        let input = x.i(0)?.t()?.contiguous()?; // [T, dim]
        let t = input.dim(0)?;
        let h = self.dim;
        let mut seq = input.clone();
        for (w_ih, b, w_hh) in &self.layers {
            let pre = seq.matmul(&w_ih.t()?)?.broadcast_add(b)?;
            let pre = pre.flatten_all()?.to_vec1::<f32>()?;
            let mut out = vec![0f32; t * h];
            let (mut hs, mut cs) = (vec![0f32; h], vec![0f32; h]);
            let mut gates = vec![0f32; 4 * h];
            for step in 0..t {
                gates.copy_from_slice(&pre[step * 4 * h..(step + 1) * 4 * h]);
                linear(&hs, 1, w_hh, 4 * h, &mut gates, true);
                // PyTorch's gate order: input, forget, cell, output.
                for j in 0..h {
                    let i = sigmoid(gates[j]);
                    let f = sigmoid(gates[h + j]);
                    let g = gates[2 * h + j].tanh();
                    let o = sigmoid(gates[3 * h + j]);
                    cs[j] = f * cs[j] + i * g;
                    hs[j] = o * cs[j].tanh();
                }
                out[step * h..(step + 1) * h].copy_from_slice(&hs);
            }
            seq = Tensor::from_vec(out, (t, h), &device)?;
        }
        Ok((seq + input)?.t()?.unsqueeze(0)?.contiguous()?)
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}
