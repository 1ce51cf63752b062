//! candle ops (forward only) over the slice kernels: GELU, softmax over the last dimension,
//! GLU over channels and GroupNorm with an optional GELU, run over rayon on CPU float32
//! tensors. Other devices and dtypes run candle's own ops, so results agree everywhere.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::slices::{affine_slice, gelu_slice, glu_slice, moments, softmax_in_place};

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
    use roar_testkit::tensor::assert_tensor_close;

    #[test]
    fn kernels_match_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (3, 8, 5, 7), &dev).unwrap();
        assert_tensor_close("gelu", &gelu_t(&x).unwrap(), &x.gelu_erf().unwrap(), 1e-5);
        assert_tensor_close(
            "softmax",
            &softmax_last_dim(&x).unwrap(),
            &candle_nn::ops::softmax_last_dim(&x).unwrap(),
            1e-6,
        );
        let c = 4;
        let want = (x.narrow(1, 0, c).unwrap()
            * candle_nn::ops::sigmoid(&x.narrow(1, c, c).unwrap()).unwrap())
        .unwrap();
        assert_tensor_close("glu", &glu(&x).unwrap(), &want, 1e-6);
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
        let norm = ours.forward(&x, false).unwrap();
        assert_tensor_close("group norm", &norm, &want, 1e-5);
        let then_gelu = ours.forward(&x, true).unwrap();
        assert_tensor_close("norm, gelu", &then_gelu, &want.gelu_erf().unwrap(), 1e-5);
    }
}
