//! The attention kernel for 64-wide heads on x86-64 CPUs with AVX-512, reading the
//! projections in their own `[B, N, H·64]` layout (no head transposes).
//!
//! Why not a general gemm: both products have a 64-wide side. `q kᵀ` contracts over only 64
//! values and `p v` produces only 64 columns, so a general gemm spends a large share of its
//! time packing a 2 688-wide operand for every block of queries, and writing and re-reading
//! the scores. Here the keys are packed once per head into 64 × 64 panels (16 KB, L1), a
//! task's 48 queries live in registers six rows at a time (24 of the 32 vector registers as
//! accumulators), and the score block (48 × keys, ~0.5 MB) stays in L2 from its product
//! through the softmax to its product with the values, which are read straight from the
//! projection in chunks that stay in L1.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::parallel::{every, item_blocks, Output};

/// Head width the register blocking is written for.
pub(crate) const HEAD: usize = 64;
/// Query rows per register tile.
const ROWS: usize = 6;
/// Query rows per task: eight register tiles.
const BLOCK: usize = 8 * ROWS;
/// Keys per packed panel.
const PANEL: usize = 64;
/// Keys per chunk of the value product (a 32 KB slice of one head's values).
const CHUNK: usize = 128;

/// Whether this CPU can run [`attention`].
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// The sizes of one call: `b` items, `heads` heads of [`HEAD`] channels, `n` queries and `m`
/// keys.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub heads: usize,
    pub n: usize,
    pub m: usize,
}

/// `softmax(q kᵀ) v` per head. `q`: `[b, n, heads·64]` (already scaled), `k` and `v`:
/// `[b, m, heads·64]`, all contiguous → `[b, n, heads·64]`.
///
/// # Panics
/// If the slices do not have the sizes `dims` says, or [`available`] is false.
pub(crate) fn attention(q: &[f32], k: &[f32], v: &[f32], dims: Dims) -> Vec<f32> {
    let Dims { b, heads, n, m } = dims;
    let c = heads * HEAD;
    assert!(available(), "attention kernel needs AVX-512");
    assert!(q.len() == b * n * c && k.len() == b * m * c && v.len() == b * m * c);
    let panels = m.div_ceil(PANEL);
    let stride = panels * PANEL;
    let packed = pack_keys(k, dims);
    let blocks = n.div_ceil(BLOCK);
    // Task (i, block) writes rows start..start+len of item bi, columns h·64..h·64+64.
    let out = Output::new((b * n, c), item_blocks(b, n, BLOCK), every(c, HEAD));
    (0..b * heads * blocks).into_par_iter().for_each_init(
        || {
            (
                vec![0f32; BLOCK * HEAD],
                vec![0f32; BLOCK * stride],
                vec![0f32; BLOCK * HEAD],
                vec![0f32; BLOCK],
            )
        },
        |(qb, scores, acc, sums), task| {
            let (i, block) = (task / blocks, task % blocks);
            let start = block * BLOCK;
            let (bi, h) = (i / heads, i % heads);
            let len = BLOCK.min(n - start);
            let tiles = len.div_ceil(ROWS);
            // Queries copied into a zero-padded block so that every register tile is whole.
            qb.fill(0.0);
            for r in 0..len {
                let at = (bi * n + start + r) * c + h * HEAD;
                qb[r * HEAD..][..HEAD].copy_from_slice(&q[at..at + HEAD]);
            }
            let keys = &packed[i * stride * HEAD..][..stride * HEAD];
            for p in 0..panels {
                let panel = &keys[p * PANEL * HEAD..][..PANEL * HEAD];
                for t in 0..tiles {
                    // SAFETY: AVX-512 was checked above; the tile reads ROWS × HEAD queries
                    // from qb and one whole panel, and writes ROWS rows of PANEL scores at
                    // column p·PANEL of rows with stride `stride`, all inside `scores`.
                    unsafe {
                        scores_tile(
                            qb[t * ROWS * HEAD..].as_ptr(),
                            panel.as_ptr(),
                            scores[t * ROWS * stride + p * PANEL..].as_mut_ptr(),
                            stride,
                        )
                    }
                }
            }
            for (r, sum) in sums[..len].iter_mut().enumerate() {
                // SAFETY: AVX-512 was checked above.
                *sum = unsafe { exp_shifted(&mut scores[r * stride..][..m]) };
            }
            acc.fill(0.0);
            let values = &v[bi * m * c + h * HEAD..];
            for j0 in (0..m).step_by(CHUNK) {
                let keys = CHUNK.min(m - j0);
                for t in 0..tiles {
                    // SAFETY: AVX-512 was checked; the tile reads `keys` scores from ROWS rows
                    // of `scores` (columns j0.. < m ≤ stride) and `keys` value rows of HEAD
                    // floats at stride c starting at key j0 of this item and head (inside
                    // `v`), and accumulates ROWS × HEAD floats of `acc`.
                    unsafe {
                        values_tile(
                            scores[t * ROWS * stride + j0..].as_ptr(),
                            stride,
                            values[j0 * c..].as_ptr(),
                            c,
                            keys,
                            acc[t * ROWS * HEAD..].as_mut_ptr(),
                        )
                    }
                }
            }
            let mut dst = out.take(bi * blocks + block, h);
            for r in 0..len {
                let inv = 1.0 / sums[r];
                let row = &mut acc[r * HEAD..][..HEAD];
                row.iter_mut().for_each(|a| *a *= inv);
                dst.push(row);
            }
        },
    );
    out.finish()
}

/// Keys per head as panels of `[HEAD][PANEL]` (channel-major, keys along a row), the last
/// panel padded with zero keys: `[b·heads, panels, HEAD, PANEL]`.
fn pack_keys(k: &[f32], Dims { b, heads, m, .. }: Dims) -> Vec<f32> {
    let c = heads * HEAD;
    let panels = m.div_ceil(PANEL);
    let mut packed = vec![0f32; b * heads * panels * HEAD * PANEL];
    packed
        .par_chunks_mut(HEAD * PANEL)
        .enumerate()
        .for_each(|(task, panel)| {
            let (i, p) = (task / panels, task % panels);
            let (bi, h) = (i / heads, i % heads);
            for j in 0..PANEL.min(m - p * PANEL) {
                let key = &k[(bi * m + p * PANEL + j) * c + h * HEAD..][..HEAD];
                for (d, x) in key.iter().enumerate() {
                    panel[d * PANEL + j] = *x;
                }
            }
        });
    packed
}

/// `row ← exp(row - max(row))`, returning the sum: a softmax row up to the division, which
/// is applied to the 64-wide output row instead. `exp` as [`crate::fast::exp`] (2^n · a
/// degree-6 polynomial), with fused multiply-adds and `scalef` for the 2^n.
///
/// # Safety
/// AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn exp_shifted(row: &mut [f32]) -> f32 {
    // SAFETY: the caller guarantees AVX-512F; every load and store is at an index below
    // `whole` (whole vectors) or masked to the `tail` elements after it, inside `row`.
    unsafe {
        let (len, p) = (row.len(), row.as_mut_ptr());
        let tail = (len % 16) as u32;
        let mask: __mmask16 = ((1u32 << tail) - 1) as u16;
        let whole = len - tail as usize;
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..whole).step_by(16) {
            mx = _mm512_max_ps(mx, _mm512_loadu_ps(p.add(i)));
        }
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, mask, p.add(whole)));
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        let exp = |x: __m512| {
            let x = _mm512_max_ps(_mm512_sub_ps(x, max), _mm512_set1_ps(-87.3));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
            );
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
            let mut y = _mm512_set1_ps(0.001_388_889);
            for c in [0.008_333_334, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0] {
                y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
            }
            _mm512_scalef_ps(y, n)
        };
        let mut sum = _mm512_setzero_ps();
        for i in (0..whole).step_by(16) {
            let y = exp(_mm512_loadu_ps(p.add(i)));
            _mm512_storeu_ps(p.add(i), y);
            sum = _mm512_add_ps(sum, y);
        }
        if tail > 0 {
            let y = exp(_mm512_maskz_loadu_ps(mask, p.add(whole)));
            _mm512_mask_storeu_ps(p.add(whole), mask, y);
            sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(mask, y));
        }
        _mm512_reduce_add_ps(sum)
    }
}

/// `ROWS × PANEL` scores: `s[r][j] = Σ_d q[r][d] · panel[d][j]`.
///
/// # Safety
/// AVX-512F; `q` addresses `ROWS × HEAD` floats, `panel` `HEAD × PANEL`, `s` `ROWS` rows of
/// `PANEL` floats at row stride `s_rs`.
#[target_feature(enable = "avx512f")]
unsafe fn scores_tile(q: *const f32, panel: *const f32, s: *mut f32, s_rs: usize) {
    // SAFETY: the caller guarantees AVX-512F and the extents of `q`, `panel` and `s`
    // (this function's contract), which bound every offset used below.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; ROWS];
        for d in 0..HEAD {
            let k = panel.add(d * PANEL);
            let kv = [
                _mm512_loadu_ps(k),
                _mm512_loadu_ps(k.add(16)),
                _mm512_loadu_ps(k.add(32)),
                _mm512_loadu_ps(k.add(48)),
            ];
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*q.add(r * HEAD + d));
                for (a, kv) in row.iter_mut().zip(&kv) {
                    *a = _mm512_fmadd_ps(x, *kv, *a);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (l, a) in row.iter().enumerate() {
                _mm512_storeu_ps(s.add(r * s_rs + l * 16), *a);
            }
        }
    }
}

/// `acc[r][·] += Σ_j p[r][j] · v[j][·]` over `keys` keys, for `ROWS` rows of `HEAD` outputs.
///
/// # Safety
/// AVX-512F; `p` addresses `ROWS` rows of `keys` floats at stride `p_rs`, `v` `keys` rows of
/// `HEAD` floats at stride `v_rs`, `acc` `ROWS × HEAD` floats.
#[target_feature(enable = "avx512f")]
unsafe fn values_tile(
    p: *const f32,
    p_rs: usize,
    v: *const f32,
    v_rs: usize,
    keys: usize,
    acc: *mut f32,
) {
    // SAFETY: the caller guarantees AVX-512F and the extents of `p`, `v` and `acc`
    // (this function's contract), which bound every offset used below.
    unsafe {
        let mut a = [[_mm512_setzero_ps(); 4]; ROWS];
        for (r, row) in a.iter_mut().enumerate() {
            for (l, x) in row.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(acc.add(r * HEAD + l * 16));
            }
        }
        for j in 0..keys {
            let vr = v.add(j * v_rs);
            let vv = [
                _mm512_loadu_ps(vr),
                _mm512_loadu_ps(vr.add(16)),
                _mm512_loadu_ps(vr.add(32)),
                _mm512_loadu_ps(vr.add(48)),
            ];
            for (r, row) in a.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*p.add(r * p_rs + j));
                for (o, vv) in row.iter_mut().zip(&vv) {
                    *o = _mm512_fmadd_ps(x, *vv, *o);
                }
            }
        }
        for (r, row) in a.iter().enumerate() {
            for (l, x) in row.iter().enumerate() {
                _mm512_storeu_ps(acc.add(r * HEAD + l * 16), *x);
            }
        }
    }
}
