//! Multi-head scaled dot-product attention. On x86-64 CPUs with AVX-512 and 64-wide heads
//! (the released models) it runs the register-tiled kernel in [`crate::attention_x86`]. On
//! other CPUs it is the portable kernel below: each (head, block of queries) is a task that
//! computes its scores with one single-threaded gemm, turns them into `exp(s - max)` in place
//! while the block is still in cache (64 queries × 2 688 keys is 688 KB, inside L2), writes
//! `scores @ values` straight into its head's columns of the `[B, N, C]` output and only then
//! divides by the row sums (64 values per row instead of 2 688). Other devices run candle's
//! batched matmuls and softmax in blocks of queries.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fast::{contiguous, softmax_rows_unnormalised, SharedMut};

/// Queries per task: small enough that a block of scores stays in L2.
pub const QUERY_BLOCK: usize = 64;

struct Attention {
    heads: usize,
}

/// `dst = lhs @ rhs` for row-major `[m, k] × [k, n]` with the given row strides, on this
/// thread (the caller parallelises over tasks).
///
/// # Safety
/// As [`crate::conv::product`].
unsafe fn product(
    dims: (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
) {
    crate::conv::product_on(
        gemm::Parallelism::None,
        dims,
        false,
        (dst, dst_rs),
        (lhs, lhs_rs),
        (rhs, rhs_rs),
    )
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
        let dst = SharedMut(out.as_mut_ptr());
        (0..bh * blocks).into_par_iter().for_each_init(
            || (vec![0f32; QUERY_BLOCK * m], vec![0f32; QUERY_BLOCK]),
            |(scores, sums), task| {
                let (i, start) = (task / blocks, (task % blocks) * QUERY_BLOCK);
                let len = QUERY_BLOCK.min(n - start);
                let scores = &mut scores[..len * m];
                let q = &q[(i * n + start) * d..][..len * d];
                let k_t = &k_t[i * d * m..][..d * m];
                let v = &v[i * m * d..][..m * d];
                let (bi, h) = (i / heads, i % heads);
                // SAFETY: every pointer/stride pair stays inside the slices taken above (row
                // strides d, m and c with len, m and d columns); the output region of task
                // (i, start) is rows start..start+len of item bi, columns h·d..h·d+d, which
                // no other task writes.
                unsafe {
                    product(
                        (len, m, d),
                        scores.as_mut_ptr(),
                        m,
                        q.as_ptr(),
                        d,
                        k_t.as_ptr(),
                        m,
                    );
                }
                // exp(s - max) now, the division by each row's sum on the d-wide output row.
                softmax_rows_unnormalised(scores, m, &mut sums[..len]);
                let out = dst.at((bi * n + start) * c + h * d);
                // SAFETY: as above; the rows scaled are the `len` rows of `d` columns this
                // task's product just wrote.
                unsafe {
                    product((len, d, m), out, c, scores.as_ptr(), m, v.as_ptr(), d);
                    for (r, sum) in sums[..len].iter().enumerate() {
                        let row = std::slice::from_raw_parts_mut(out.add(r * c), d);
                        let inv = 1.0 / sum;
                        row.iter_mut().for_each(|x| *x *= inv);
                    }
                }
            },
        );
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

/// Whether float32 attention with `head`-wide heads runs the x86 kernel on this machine.
#[cfg(target_arch = "x86_64")]
fn x86_kernel(head: usize) -> bool {
    head == crate::attention_x86::HEAD && crate::attention_x86::available()
}

/// `softmax(q kᵀ) v` per head, heads merged back into channels. `q`: `[B, N, H·d]` (already
/// scaled), `k` and `v`: `[B, M, H·d]` → `[B, N, H·d]`. On the CPU in float32, 64-wide heads
/// run the AVX-512 kernel where the CPU has it, other widths the portable kernel above; other
/// devices (or dtypes) run candle's ops in query blocks.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> crate::Result<Tensor> {
    let (b, n, c) = q.dims3()?;
    let m = k.dim(1)?;
    if heads == 0 || c % heads != 0 || m == 0 {
        return Err(candle_core::Error::Msg(format!(
            "attention: {c} channels, {heads} heads, {m} keys"
        ))
        .into());
    }
    let d = c / heads;
    let cpu = q.device().is_cpu() && q.dtype() == candle_core::DType::F32;
    #[cfg(target_arch = "x86_64")]
    if cpu && x86_kernel(d) {
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
    if cpu {
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

    fn check(heads: usize, d: usize, n: usize, m: usize, dtype: DType) {
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
        let got = super::attention(&q, &k, &v, heads)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let want = reference(&q, &k, &v, heads);
        let diff = crate::fast::max_abs_diff(&got, &want);
        assert!(
            diff < 1e-5,
            "{heads}×{d}, {n}×{m} {dtype:?}: max diff {diff}"
        );
    }

    /// The portable CPU kernel (8-wide heads), with a ragged last block of queries.
    #[test]
    fn portable_kernel_matches_softmax_qk_v() {
        check(3, 8, 2 * super::QUERY_BLOCK + 5, 37, DType::F32);
    }

    /// 64-wide heads: the AVX-512 kernel where the CPU has it. Sizes cut every blocking
    /// unevenly (48-query blocks, 6-row tiles, 64-key panels, 128-key chunks), and one query
    /// or one key alone.
    #[test]
    fn head_64_kernel_matches_softmax_qk_v() {
        for (n, m) in [(101, 200), (48, 64), (1, 129), (7, 1)] {
            check(2, 64, n, m, DType::F32);
        }
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

    /// Candle's ops, which other devices run (reached on the CPU with float64).
    #[test]
    fn candle_ops_path_matches_softmax_qk_v() {
        check(2, 16, 70, 33, DType::F64);
    }
}
