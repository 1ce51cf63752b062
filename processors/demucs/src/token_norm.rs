//! The transformer's norms over token-major `[B, N, C]` sequences, with a per-channel affine
//! map: LayerNorm (statistics per token) and the `norm_out` GroupNorm(1) (statistics over a
//! whole item). On the CPU each is one multi-threaded pass after its statistics, instead of
//! candle's single-threaded layer norm or the six tensor ops (and buffers) of the
//! GroupNorm(1) written with them. Statistics are two-pass per token, and per item in blocks
//! of a few thousand values merged in float64.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::fast::{contiguous, moments, Stats};

/// Tokens per parallel task.
const ROWS: usize = 64;

/// Which statistics a [`TokenNorm`] normalises with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// Each token's `C` values (LayerNorm).
    Token,
    /// Each item's `N × C` values (GroupNorm with one group).
    Item,
}

/// A norm over `[B, N, C]` with weight and bias per channel.
pub(crate) struct TokenNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f64,
    over: Over,
}

impl TokenNorm {
    pub(crate) fn new(weight: &Tensor, bias: &Tensor, eps: f64, over: Over) -> crate::Result<Self> {
        let (weight, bias): (Vec<f32>, Vec<f32>) = (weight.to_vec1()?, bias.to_vec1()?);
        if weight.len() != bias.len() {
            return Err(candle_core::Error::Msg(format!(
                "norm: {} weights, {} biases",
                weight.len(),
                bias.len()
            ))
            .into());
        }
        Ok(Self {
            weight,
            bias,
            eps,
            over,
        })
    }

    /// `x`: contiguous float32 `[B, N, C]` on the CPU.
    pub(crate) fn forward(&self, x: &Tensor) -> crate::Result<Tensor> {
        Ok(x.contiguous()?.apply_op1_no_bwd(self)?)
    }

    /// `out = (x - mean) / sqrt(var + eps) · weight + bias` along each row of `C`.
    fn apply_rows(
        &self,
        x: &[f32],
        out: &mut [f32],
        stats: impl Fn(usize, &[f32]) -> (f64, f64) + Sync,
    ) {
        let c = self.weight.len();
        out.par_chunks_mut(ROWS * c)
            .zip(x.par_chunks(ROWS * c))
            .enumerate()
            .for_each(|(block, (o, x))| {
                for (r, (o, x)) in o.chunks_mut(c).zip(x.chunks(c)).enumerate() {
                    let (mean, var) = stats(block * ROWS + r, x);
                    let inv = 1.0 / (var + self.eps).sqrt();
                    let (m, s) = (mean as f32, inv as f32);
                    for (((o, x), w), b) in o.iter_mut().zip(x).zip(&self.weight).zip(&self.bias) {
                        *o = (x - m) * s * w + b;
                    }
                }
            });
    }
}

impl CustomOp1 for TokenNorm {
    fn name(&self) -> &'static str {
        "roar-token-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l)?;
        let (b, n, c) = l.shape().dims3()?;
        if c != self.weight.len() {
            candle_core::bail!("norm: {c} channels, weights for {}", self.weight.len());
        }
        let mut out = vec![0f32; x.len()];
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), Shape::from_dims(&[b, n, c])));
        }
        match self.over {
            Over::Token => self.apply_rows(x, &mut out, |_, row| moments(row)),
            Over::Item => {
                let items: Vec<(f64, f64)> = x
                    .chunks(n * c)
                    .map(|item| {
                        let st = Stats::of_blocks(item);
                        (st.mean, st.var())
                    })
                    .collect();
                self.apply_rows(x, &mut out, |row, _| items[row / n]);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from_dims(&[b, n, c])))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use roar_testkit::tensor::assert_tensor_close;

    use super::*;

    /// `(x - mean) / sqrt(var + eps) · w + b` in float64, statistics over the last `dims`
    /// dimensions of `[B, N, C]`.
    fn definition(x: &Tensor, w: &Tensor, b: &Tensor, whole_item: bool) -> Tensor {
        let (bn, n, c) = x.dims3().unwrap();
        let x = x.to_dtype(DType::F64).unwrap();
        let flat = if whole_item {
            x.reshape((bn, n * c)).unwrap()
        } else {
            x.reshape((bn * n, c)).unwrap()
        };
        let mean = flat.mean_keepdim(1).unwrap();
        let centred = flat.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(1).unwrap();
        centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .reshape((bn, n, c))
            .unwrap()
            .broadcast_mul(&w.to_dtype(DType::F64).unwrap())
            .unwrap()
            .broadcast_add(&b.to_dtype(DType::F64).unwrap())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    }

    #[test]
    fn layer_norm_and_item_norm_match_their_definitions() {
        let dev = Device::Cpu;
        // 70 tokens: a ragged last task; an offset so the mean matters.
        let x = (Tensor::randn(0f32, 1.0, (2, 70, 12), &dev).unwrap() + 3.0).unwrap();
        let w = Tensor::randn(1f32, 0.3, 12, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.3, 12, &dev).unwrap();
        for (over, whole) in [(Over::Token, false), (Over::Item, true)] {
            let ours = TokenNorm::new(&w, &b, 1e-5, over).unwrap();
            let want = definition(&x, &w, &b, whole);
            let what = format!("whole item {whole}");
            assert_tensor_close(&what, &ours.forward(&x).unwrap(), &want, 1e-5);
        }
        let ours = TokenNorm::new(&w, &b, 1e-5, Over::Item).unwrap();
        let wrong = Tensor::zeros((1, 3, 5), candle_core::DType::F32, &dev).unwrap();
        assert!(ours.forward(&wrong).is_err());
        let empty = Tensor::zeros((1, 0, 12), candle_core::DType::F32, &dev).unwrap();
        assert_eq!(ours.forward(&empty).unwrap().dims(), &[1, 0, 12]);
        assert!(TokenNorm::new(&w, &b.narrow(0, 0, 11).unwrap(), 1e-5, Over::Item).is_err());
    }
}
