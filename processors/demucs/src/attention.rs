//! Multi-head scaled dot-product attention. On x86-64 CPUs with AVX-512 and 64-wide heads
//! (the released models) it runs the register-tiled kernel in [`crate::attention_x86`]. On
//! other CPUs it is the portable kernel below: each (head, block of queries) is a task that
//! computes its scores with one single-threaded gemm, turns them into `exp(s - max)` in place
//! while the block is still in cache (64 queries × 2 688 keys is 688 KB, inside L2), writes
//! `scores @ values` straight into its head's columns of the `[B, N, C]` output and only then
//! divides by the row sums (64 values per row instead of 2 688). Other devices run candle's
//! batched matmuls and softmax in blocks of queries.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fast::{contiguous, softmax_rows_unnormalised};
use crate::gemm::{product, MatMut, MatRef, Threads};
use crate::parallel::{every, item_blocks, Blocks};

/// Queries per task: small enough that a block of scores stays in L2.
pub const QUERY_BLOCK: usize = 64;

struct Attention {
    heads: usize,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "roar-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k_t, v) = (
            contiguous(sq, lq)?,
            contiguous(sk, lk)?,
            contiguous(sv, lv)?,
        );
        let (bh, n, d) = lq.shape().dims3()?;
        let m = lk.shape().dims3()?.2;
        let heads = self.heads;
        if lk.shape().dims3()? != (bh, d, m)
            || lv.shape().dims3()? != (bh, m, d)
            || heads == 0
            || m == 0
            || bh % heads != 0
        {
            candle_core::bail!("attention: q {:?}, k^T {:?}, v {:?}", lq, lk, lv)
        }
        let (b, c) = (bh / heads, heads * d);
        let blocks = n.div_ceil(QUERY_BLOCK);
        let mut out = vec![0f32; b * n * c];
        if d == 0 {
            return Ok((CpuStorage::F32(out), Shape::from_dims(&[b, n, c])));
        }
        // Task (i, block) writes rows start..start+len of item bi, columns h·d..h·d+d.
        let blocks_out = Blocks::new(
            &mut out,
            (b * n, c),
            item_blocks(b, n, QUERY_BLOCK),
            every(c, d),
        );
        (0..bh * blocks).into_par_iter().for_each_init(
            || (vec![0f32; QUERY_BLOCK * m], vec![0f32; QUERY_BLOCK]),
            |(scores, sums), task| {
                let (i, block) = (task / blocks, task % blocks);
                let start = block * QUERY_BLOCK;
                let len = QUERY_BLOCK.min(n - start);
                let scores = &mut scores[..len * m];
                let q = &q[(i * n + start) * d..][..len * d];
                let k_t = &k_t[i * d * m..][..d * m];
                let v = &v[i * m * d..][..m * d];
                let (bi, h) = (i / heads, i % heads);
                product(
                    MatMut::new(scores, len, m, m),
                    MatRef::new(q, len, d, d),
                    MatRef::new(k_t, d, m, m),
                    false,
                    Threads::One,
                );
                // exp(s - max) now, the division by each row's sum on the d-wide output row.
                softmax_rows_unnormalised(scores, m, &mut sums[..len]);
                let mut dst = blocks_out.take(bi * blocks + block, h);
                product(
                    dst.matrix(),
                    MatRef::new(scores, len, m, m),
                    MatRef::new(v, m, d, d),
                    false,
                    Threads::One,
                );
                for (r, sum) in sums[..len].iter().enumerate() {
                    let inv = 1.0 / sum;
                    dst.row(r).iter_mut().for_each(|x| *x *= inv);
                }
            },
        );
        drop(blocks_out);
        Ok((CpuStorage::F32(out), Shape::from_dims(&[b, n, c])))
    }
}

/// The x86 kernel as a candle op over token-major `q`, `k`, `v`.
#[cfg(target_arch = "x86_64")]
struct TokenMajor {
    heads: usize,
}

#[cfg(target_arch = "x86_64")]
impl CustomOp3 for TokenMajor {
    fn name(&self) -> &'static str {
        "roar-attention-x86"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, n, c) = lq.shape().dims3()?;
        let m = lk.shape().dims3()?.1;
        if m == 0
            || c != self.heads * crate::attention_x86::HEAD
            || lk.shape().dims3()? != (b, m, c)
            || lv.shape().dims3()? != (b, m, c)
        {
            candle_core::bail!("attention: q {:?}, k {:?}, v {:?}", lq, lk, lv)
        }
        let dims = crate::attention_x86::Dims {
            b,
            heads: self.heads,
            n,
            m,
        };
        let out = crate::attention_x86::attention(
            contiguous(sq, lq)?,
            contiguous(sk, lk)?,
            contiguous(sv, lv)?,
            dims,
        );
        Ok((CpuStorage::F32(out), Shape::from_dims(&[b, n, c])))
    }
}

/// Which implementation runs an attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The register-tiled kernel for 64-wide heads on x86-64 CPUs with AVX-512 (float32).
    Avx512,
    /// The portable CPU kernel above (float32).
    Cpu,
    /// candle's matmuls and softmax in blocks of queries (other devices and dtypes).
    Candle,
}

/// The kernel [`attention`] runs for `head`-wide heads of `dtype` on `device`.
pub fn kernel(device: &Device, dtype: DType, head: usize) -> Kernel {
    if !device.is_cpu() || dtype != DType::F32 {
        return Kernel::Candle;
    }
    #[cfg(target_arch = "x86_64")]
    if head == crate::attention_x86::HEAD && crate::attention_x86::available() {
        return Kernel::Avx512;
    }
    let _ = head;
    Kernel::Cpu
}

/// `softmax(q kᵀ) v` per head, heads merged back into channels. `q`: `[B, N, H·d]` (already
/// scaled), `k` and `v`: `[B, M, H·d]` → `[B, N, H·d]`. On the CPU in float32, 64-wide heads
/// run the AVX-512 kernel where the CPU has it, other widths the portable kernel above; other
/// devices (or dtypes) run candle's ops in query blocks ([`kernel`] says which).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> crate::Result<Tensor> {
    let c = q.dim(2)?;
    let head = c.checked_div(heads).unwrap_or(0);
    attention_with(q, k, v, heads, kernel(q.device(), q.dtype(), head))
}

/// [`attention`] on the kernel given: an error when it cannot run these tensors here (the
/// AVX-512 kernel on another CPU or head width, a CPU kernel off the CPU or in another dtype).
pub fn attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    kernel: Kernel,
) -> crate::Result<Tensor> {
    let (b, n, c) = q.dims3()?;
    let m = k.dim(1)?;
    if heads == 0 || c % heads != 0 || m == 0 {
        return Err(candle_core::Error::Msg(format!(
            "attention: {c} channels, {heads} heads, {m} keys"
        ))
        .into());
    }
    let d = c / heads;
    let possible = match kernel {
        Kernel::Candle => true,
        Kernel::Cpu => self::kernel(q.device(), q.dtype(), d) != Kernel::Candle,
        Kernel::Avx512 => self::kernel(q.device(), q.dtype(), d) == Kernel::Avx512,
    };
    if !possible {
        return Err(candle_core::Error::Msg(format!(
            "attention: the {kernel:?} kernel cannot run {d}-wide heads of {:?} on {:?}",
            q.dtype(),
            q.device()
        ))
        .into());
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512 {
        return Ok(q.contiguous()?.apply_op3_no_bwd(
            &k.contiguous()?,
            &v.contiguous()?,
            &TokenMajor { heads },
        )?);
    }
    let split = |x: &Tensor, len: usize| -> crate::Result<Tensor> {
        Ok(x.reshape((b, len, heads, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * heads, len, d))?)
    };
    let (qh, vh) = (split(q, n)?, split(v, m)?);
    // K^T laid out contiguously: the gemm runs several times faster than on a view.
    let k_t = k
        .reshape((b, m, heads, d))?
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((b * heads, d, m))?;
    if kernel == Kernel::Cpu {
        return Ok(qh.apply_op3_no_bwd(&k_t, &vh, &Attention { heads })?);
    }
    // Queries in blocks: the full score matrix (heads × 2688² floats for the released
    // models, ~230 MB) never exists.
    let mut blocks = Vec::with_capacity(n.div_ceil(QUERY_BLOCK));
    for start in (0..n).step_by(QUERY_BLOCK) {
        let len = QUERY_BLOCK.min(n - start);
        let att = candle_nn::ops::softmax_last_dim(&qh.narrow(1, start, len)?.matmul(&k_t)?)?;
        blocks.push(att.matmul(&vh)?);
    }
    Ok(Tensor::cat(&blocks, 1)?
        .reshape((b, heads, n, d))?
        .transpose(1, 2)?
        .reshape((b, n, c))?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use roar_testkit::tensor::assert_tensor_close;

    use super::Kernel;

    /// The textbook formula per head on token-major `[B, N, H·d]` tensors, in float64.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Tensor {
        let split = |x: &Tensor| {
            let (b, n, c) = x.dims3().unwrap();
            x.to_dtype(DType::F64)
                .unwrap()
                .reshape((b, n, heads, c / heads))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (qh, kh, vh) = (split(q), split(k), split(v));
        let att = candle_nn::ops::softmax_last_dim(&qh.matmul(&kh.t().unwrap()).unwrap())
            .unwrap()
            .matmul(&vh)
            .unwrap();
        let (b, n, c) = q.dims3().unwrap();
        att.transpose(1, 2)
            .unwrap()
            .reshape((b, n, c))
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    }

    fn check(heads: usize, d: usize, n: usize, m: usize, dtype: DType, kernel: Kernel) {
        let dev = Device::Cpu;
        let b = 2;
        let rand = |len| {
            Tensor::randn(0f32, 1., (b, len, heads * d), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        // Queries come scaled by 1/sqrt(d), as the model's projection leaves them: logits of
        // unit spread, not √d-wide ones whose softmax amplifies float32 rounding.
        let q = (rand(n) / (d as f64).sqrt()).unwrap();
        let (k, v) = (rand(m), rand(m));
        let got = super::attention_with(&q, &k, &v, heads, kernel).unwrap();
        let want = reference(&q, &k, &v, heads);
        let what = format!("{kernel:?} {heads}×{d}, {n}×{m} {dtype:?}");
        assert_tensor_close(&what, &got, &want, 1e-5);
    }

    /// The portable CPU kernel (8-wide heads), with a ragged last block of queries.
    #[test]
    fn portable_kernel_matches_softmax_qk_v() {
        check(
            3,
            8,
            2 * super::QUERY_BLOCK + 5,
            37,
            DType::F32,
            Kernel::Cpu,
        );
    }

    /// 64-wide heads (the released models) on the kernel this CPU runs them with, the AVX-512
    /// one where it has it (required when `ROAR_REQUIRE_AVX512=1`), and on the portable
    /// kernel, which CPUs without AVX-512 run. Sizes cut every blocking unevenly (48-query
    /// blocks, 6-row tiles, 64-key panels, 128-key chunks), and one query or one key alone.
    #[test]
    fn head_64_kernels_match_softmax_qk_v() {
        let fast = super::kernel(&Device::Cpu, DType::F32, 64);
        roar_testkit::kernel_ran("attention, 64-wide heads", fast == Kernel::Avx512);
        for kernel in [fast, Kernel::Cpu] {
            for (n, m) in [(101, 200), (48, 64), (1, 129), (7, 1)] {
                check(2, 64, n, m, DType::F32, kernel);
            }
        }
    }

    #[test]
    fn a_kernel_that_cannot_run_is_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 2 * 8), DType::F32, &dev).unwrap();
        assert!(super::attention_with(&x, &x, &x, 2, Kernel::Avx512).is_err());
        let x = x.to_dtype(DType::F64).unwrap();
        assert!(super::attention_with(&x, &x, &x, 2, Kernel::Cpu).is_err());
        assert_eq!(super::kernel(&dev, DType::F64, 64), Kernel::Candle);
        assert_eq!(super::kernel(&dev, DType::F32, 8), Kernel::Cpu);
    }

    #[test]
    fn no_keys_is_an_error_on_every_path() {
        let dev = Device::Cpu;
        for (d, dtype) in [(64, DType::F32), (8, DType::F32), (8, DType::F64)] {
            let q = Tensor::zeros((1, 5, 2 * d), dtype, &dev).unwrap();
            let none = Tensor::zeros((1, 0, 2 * d), dtype, &dev).unwrap();
            assert!(
                super::attention(&q, &none, &none, 2).is_err(),
                "d {d} {dtype:?}"
            );
        }
    }

    /// Candle's ops, which other devices run: in float64 as the CPU reaches them by default,
    /// and in float32 when asked for.
    #[test]
    fn candle_ops_path_matches_softmax_qk_v() {
        check(2, 16, 70, 33, DType::F64, Kernel::Candle);
        check(2, 64, 70, 33, DType::F32, Kernel::Candle);
    }
}
