//! `nn.Linear` for the transformer. On the CPU it is one gemm over all tokens into an output
//! that already holds the bias, or the residual stream plus the bias, with GELU applied in
//! place: the feed-forward's input layer and the residual adds (with LayerScale folded into
//! the weights) cost no extra passes or buffers. Other devices multiply by the stored
//! transposed weight with candle's ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::fast::{contiguous, gelu_in_place};
use crate::gemm::{product, MatMut, MatRef, Threads};
use crate::parallel::{every, whole, Output};
use crate::Result;

pub(crate) struct Linear {
    imp: Imp,
}

enum Imp {
    Cpu {
        /// `[cin, cout]`
        w_t: Vec<f32>,
        b: Vec<f32>,
    },
    Device {
        w_t: Tensor,
        b: Tensor,
    },
}

/// What is added to the product, and what runs after.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Gelu,
    Residual,
}

impl Linear {
    /// `w`: `[cout, cin]` as PyTorch stores it; `fused`: the CPU kernel.
    pub(crate) fn new(w: &Tensor, b: &Tensor, fused: bool) -> Result<Self> {
        let w_t = w.t()?.contiguous()?;
        Ok(Self {
            imp: if fused {
                Imp::Cpu {
                    w_t: w_t.flatten_all()?.to_vec1()?,
                    b: b.to_vec1()?,
                }
            } else {
                Imp::Device { w_t, b: b.clone() }
            },
        })
    }

    /// `x W^T + b` over `[B, N, cin]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None, Mode::Plain)
    }

    /// `gelu(x W^T + b)`.
    pub(crate) fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None, Mode::Gelu)
    }

    /// `residual + x W^T + b`.
    pub(crate) fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.run(x, Some(residual), Mode::Residual)
    }

    fn run(&self, x: &Tensor, residual: Option<&Tensor>, mode: Mode) -> Result<Tensor> {
        match &self.imp {
            Imp::Cpu { w_t, b } => {
                let op = LinearOp { w_t, b, mode };
                let x = x.contiguous()?;
                Ok(match residual {
                    Some(r) => x.apply_op2_no_bwd(&r.contiguous()?, &op)?,
                    None => x.apply_op1_no_bwd(&op)?,
                })
            }
            Imp::Device { w_t, b } => {
                let (bn, n, c) = x.dims3()?;
                let y = x.reshape((bn * n, c))?.matmul(w_t)?.broadcast_add(b)?;
                let y = y.reshape((bn, n, ()))?;
                Ok(match (mode, residual) {
                    (Mode::Gelu, _) => crate::fast::gelu_t(&y)?,
                    (Mode::Residual, Some(r)) => (r + y)?,
                    _ => y,
                })
            }
        }
    }
}

struct LinearOp<'a> {
    w_t: &'a [f32],
    b: &'a [f32],
    mode: Mode,
}

/// Rows per parallel task (at least) of the output's fill and GELU passes.
const ROWS: usize = 64;

impl LinearOp<'_> {
    fn apply(
        &self,
        x: &[f32],
        residual: Option<&[f32]>,
        l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (bn, n, cin) = l.shape().dims3()?;
        let cout = self.b.len();
        if cin * cout != self.w_t.len() {
            candle_core::bail!(
                "linear: {cin} input features and {cout} outputs, {} weights",
                self.w_t.len()
            );
        }
        let rows = bn * n;
        // Row r of the `[rows, cout]` output starts as the bias (plus the residual's row).
        let out = Output::new((rows, cout), every(rows, 1), whole(cout));
        (0..rows).into_par_iter().with_min_len(ROWS).for_each(|r| {
            let mut dst = out.take(r, 0);
            match residual {
                Some(res) => {
                    let res = &res[r * cout..(r + 1) * cout];
                    dst.push_iter(self.b.iter().zip(res).map(|(b, x)| x + b));
                }
                None => dst.push(self.b),
            }
        });
        let mut out = out.finish();
        product(
            MatMut::new(&mut out, rows, cout, cout),
            MatRef::new(x, rows, cin, cin),
            MatRef::new(self.w_t, cin, cout, cout),
            true,
            Threads::All,
        );
        if self.mode == Mode::Gelu {
            out.par_chunks_mut(ROWS * cout).for_each(gelu_in_place);
        }
        Ok((CpuStorage::F32(out), Shape::from_dims(&[bn, n, cout])))
    }
}

impl CustomOp1 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "roar-linear"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.apply(contiguous(s, l)?, None, l)
    }
}

impl CustomOp2 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "roar-linear-residual"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (bn, n, _) = l1.shape().dims3()?;
        if l2.shape().dims() != [bn, n, self.b.len()] {
            candle_core::bail!(
                "linear: residual {:?} for output [{bn}, {n}, {}]",
                l2.shape(),
                self.b.len()
            );
        }
        self.apply(contiguous(s1, l1)?, Some(contiguous(s2, l2)?), l1)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use roar_testkit::tensor::assert_tensor_close;

    use super::*;

    #[test]
    fn fused_modes_match_candle_ops() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 70, 12), &dev).unwrap();
        let res = Tensor::randn(0f32, 1.0, (2, 70, 9), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (9, 12), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 9, &dev).unwrap();
        let (cpu, ops) = (
            Linear::new(&w, &b, true).unwrap(),
            Linear::new(&w, &b, false).unwrap(),
        );
        let want = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        for (name, l) in [("cpu", &cpu), ("ops", &ops)] {
            assert_tensor_close(name, &l.forward(&x).unwrap(), &want, 1e-4);
            let gelu = l.forward_gelu(&x).unwrap();
            assert_tensor_close(name, &gelu, &want.gelu_erf().unwrap(), 1e-4);
            let r = l.forward_residual(&x, &res).unwrap();
            assert_tensor_close(name, &r, &(&res + &want).unwrap(), 1e-4);
        }
        assert!(cpu.forward_residual(&x, &x).is_err());
    }
}
