//! Multi-head scaled dot-product attention on the CPU as one kernel: each (head, block of
//! queries) is a task that computes its scores with one single-threaded gemm, turns them into
//! `exp(s - max)` in place while the block is still in cache (64 queries × 2 688 keys is 688 KB,
//! inside L2), writes `scores @ values` straight into its head's columns of the `[B, N, C]`
//! output and only then divides by the row sums (64 values per row instead of 2 688).
//! Compared with candle's batched matmuls around a softmax op, there is no per-product thread
//! hand-off, no score tensor per block, and no concatenation or transpose of the heads
//! afterwards.

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
/// Each pointer must address its matrix with its row stride, and `dst` must not alias the
/// inputs.
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        false,
        lhs,
        1,
        lhs_rs as isize,
        rhs,
        1,
        rhs_rs as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
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

/// `softmax(q kᵀ) v` per head, heads merged back into channels. `q`: `[B·H, N, d]` (already
/// scaled), `k_t`: `[B·H, d, M]`, `v`: `[B·H, M, d]` → `[B, N, H·d]`. The CPU kernel needs
/// contiguous float32 inputs; other devices (or dtypes) run candle's ops in query blocks.
pub fn attention(q: &Tensor, k_t: &Tensor, v: &Tensor, heads: usize) -> crate::Result<Tensor> {
    if q.device().is_cpu() && q.dtype() == candle_core::DType::F32 {
        return Ok(q.contiguous()?.apply_op3_no_bwd(
            &k_t.contiguous()?,
            &v.contiguous()?,
            &Attention { heads },
        )?);
    }
    let (bh, n, d) = q.dims3()?;
    let mut blocks = Vec::with_capacity(n.div_ceil(QUERY_BLOCK));
    for start in (0..n).step_by(QUERY_BLOCK) {
        let len = QUERY_BLOCK.min(n - start);
        let att = candle_nn::ops::softmax_last_dim(&q.narrow(1, start, len)?.matmul(k_t)?)?;
        blocks.push(att.matmul(v)?);
    }
    Ok(Tensor::cat(&blocks, 1)?
        .reshape((bh / heads, heads, n, d))?
        .transpose(1, 2)?
        .reshape((bh / heads, n, heads * d))?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// The kernel against the textbook formula, with a ragged last block and two items.
    #[test]
    fn matches_softmax_qk_v_per_head() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (b, heads, n, m, d) = (2, 3, 2 * super::QUERY_BLOCK + 5, 37, 8);
        let q = Tensor::randn(0f32, 1., (b * heads, n, d), &dev)?;
        let k = Tensor::randn(0f32, 1., (b * heads, m, d), &dev)?;
        let v = Tensor::randn(0f32, 1., (b * heads, m, d), &dev)?;
        let k_t = k.transpose(1, 2)?.contiguous()?;
        let got = super::attention(&q, &k_t, &v, heads)?;
        let att = candle_nn::ops::softmax_last_dim(&q.matmul(&k_t)?)?.matmul(&v)?;
        let want = att
            .reshape((b, heads, n, d))?
            .transpose(1, 2)?
            .reshape((b, n, heads * d))?;
        let diff = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "max diff {diff}");
        Ok(())
    }
}
