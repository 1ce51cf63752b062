//! 3x3 convolutions (stride 1, one zero on every side) on the CPU by Winograd's minimal
//! filtering F(2x2, 3x3): the frequency decoders' `rewrite` convolutions, which are a fifth of
//! a segment's arithmetic. Each 2x2 block of outputs is computed from a 4x4 block of inputs
//! with 16 multiplications per channel pair instead of 36, so the gemms do 4/9 of the
//! direct convolution's work; the transforms around them are additions only.
//!
//! Per block of tile rows: every input channel's 4x4 tiles become 16 transformed values
//! (`V = Bᵀ d B`, the skip connection added on the way in), one gemm per value multiplies them
//! by the transformed weights (`U = G g Gᵀ`, computed once at load), and each output tile is
//! `Aᵀ M A` plus the bias, with GELU or GLU applied before it is stored. The transforms are
//! exact in real arithmetic; in float32 the results differ from the direct sum by a few ulps
//! of the operands (the tests bound it).

use rayon::prelude::*;

use crate::conv::{product_on, Epilogue};
use crate::fast::{gelu_in_place, glu_slice, simd, written_by, Reused, SharedMut};

/// Transformed values per tile (4 × 4).
const VALUES: usize = 16;
/// Floats of transformed inputs and products per block of tile rows (16 MB): big gemms, and
/// the block still stays in the last-level cache.
const BLOCK_FLOATS: usize = 1 << 22;

/// A 3x3 convolution's weights transformed for F(2x2, 3x3).
pub(crate) struct Winograd {
    /// `[16][cout][cin]`: `U = G g Gᵀ` per (output, input) channel pair.
    u: Vec<f32>,
    cin: usize,
    cout: usize,
    /// [`BLOCK_FLOATS`]; tests make it small so that blocks split the tile rows.
    pub(crate) block_floats: usize,
}

/// `G` of F(2, 3).
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

impl Winograd {
    /// `tap(o, c, a, b)`: the weight of output channel `o`, input channel `c` at kernel row
    /// `a`, column `b`.
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        tap: impl Fn(usize, usize, usize, usize) -> f32,
    ) -> Self {
        let mut u = vec![0f32; VALUES * cout * cin];
        for o in 0..cout {
            for c in 0..cin {
                for (a, ga) in G.iter().enumerate() {
                    for (b, gb) in G.iter().enumerate() {
                        let mut s = 0f64;
                        for (r, gr) in ga.iter().enumerate() {
                            for (q, gq) in gb.iter().enumerate() {
                                s += gr * f64::from(tap(o, c, r, q)) * gq;
                            }
                        }
                        u[((a * 4 + b) * cout + o) * cin + c] = s as f32;
                    }
                }
            }
        }
        Self {
            u,
            cin,
            cout,
            block_floats: BLOCK_FLOATS,
        }
    }

    /// `x` (+ `skip`): `[n, cin, h, w]` → `[n, cout (or cout / 2 after GLU), h, w]`.
    pub(crate) fn run(
        &self,
        x: &[f32],
        skip: Option<&[f32]>,
        bias: &[f32],
        (n, h, w): (usize, usize, usize),
        epi: Epilogue,
    ) -> Vec<f32> {
        let (cin, cout) = (self.cin, self.cout);
        let cout_out = if epi == Epilogue::Glu { cout / 2 } else { cout };
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let rows = (self.block_floats / (VALUES * (cin + cout) * tw)).clamp(1, th);
        let mut v = Reused::new(VALUES * cin * rows * tw);
        let mut m = Reused::new(VALUES * cout * rows * tw);
        let plane = h * w;
        let run = |dst: SharedMut| {
            for item in 0..n {
                let x = &x[item * cin * plane..][..cin * plane];
                let skip = skip.map(|s| &s[item * cin * plane..][..cin * plane]);
                let dst = SharedMut(dst.at(item * cout_out * plane));
                for r0 in (0..th).step_by(rows) {
                    let tiles = rows.min(th - r0) * tw;
                    let block = Block {
                        r0,
                        tiles,
                        tw,
                        h,
                        w,
                    };
                    self.inputs(&block, x, skip, &mut v);
                    let (vs, ms) = (SharedMut(v.as_mut_ptr()), SharedMut(m.as_mut_ptr()));
                    (0..VALUES).into_par_iter().for_each(|xi| {
                        // SAFETY: value xi's product reads U[xi] (`[cout, cin]`) and its
                        // `[cin, tiles]` slice of v, and writes its own `[cout, tiles]` slice
                        // of m; the buffers were sized for the largest block.
                        unsafe {
                            product_on(
                                gemm::Parallelism::None,
                                (cout, tiles, cin),
                                false,
                                (ms.at(xi * cout * tiles), tiles),
                                (self.u[xi * cout * cin..].as_ptr(), cin),
                                (vs.at(xi * cin * tiles), tiles),
                            )
                        }
                    });
                    self.outputs(&block, &m, bias, dst, epi);
                }
            }
        };
        // SAFETY: the blocks cover every tile row of every item, and `outputs` writes all
        // `w` columns of both rows of each tile row (the second only when it exists), for
        // every output channel: every element of `[n, cout_out, h, w]`.
        unsafe { written_by(n * cout_out * plane, run) }
    }

    /// `V = Bᵀ d B` of every tile in the block, `[16][cin][tiles]`.
    fn inputs(&self, b: &Block, x: &[f32], skip: Option<&[f32]>, v: &mut [f32]) {
        let (cin, tiles, plane) = (self.cin, b.tiles, b.h * b.w);
        let vs = SharedMut(v.as_mut_ptr());
        (0..cin).into_par_iter().for_each_init(
            || vec![0f32; 8 * (2 * b.tw + 2)],
            |rowbuf, c| {
                let x = &x[c * plane..][..plane];
                let skip = skip.map(|s| &s[c * plane..][..plane]);
                let len = 2 * b.tw + 2;
                for i in 0..tiles / b.tw {
                    let tr = b.r0 + i;
                    let (p, q) = rowbuf.split_at_mut(4 * len);
                    // Input rows 2·tr - 1 ..= 2·tr + 2, with a zero column before and zeros
                    // after, plus the skip.
                    for (a, row) in p.chunks_mut(len).enumerate() {
                        row.fill(0.0);
                        let f = (2 * tr + a) as isize - 1;
                        if f < 0 || f >= b.h as isize {
                            continue;
                        }
                        let at = f as usize * b.w;
                        row[1..=b.w].copy_from_slice(&x[at..at + b.w]);
                        if let Some(s) = skip {
                            row[1..=b.w]
                                .iter_mut()
                                .zip(&s[at..at + b.w])
                                .for_each(|(r, s)| *r += s);
                        }
                    }
                    rows_bt(p, q, len);
                    for (a, qa) in q.chunks(len).enumerate() {
                        // SAFETY: values 4a..4a+4 of channel c, tiles i·tw.., are written by
                        // this task only, inside v (sized for [16][cin][tiles]).
                        let col = |k: usize| unsafe {
                            std::slice::from_raw_parts_mut(
                                vs.at(((4 * a + k) * cin + c) * tiles + i * b.tw),
                                b.tw,
                            )
                        };
                        columns_bt(qa, col(0), col(1), col(2), col(3));
                    }
                }
            },
        );
    }

    /// `Y = Aᵀ M A` + bias of every tile, then the epilogue, into the output planes.
    fn outputs(&self, b: &Block, m: &[f32], bias: &[f32], ds: SharedMut, epi: Epilogue) {
        let (cout, tiles, plane) = (self.cout, b.tiles, b.h * b.w);
        let half = cout / 2;
        let channels = if epi == Epilogue::Glu { half } else { cout };
        let len = 2 * b.tw;
        (0..channels).into_par_iter().for_each_init(
            || vec![0f32; 5 * len],
            |buf, o| {
                let (ya, rest) = buf.split_at_mut(2 * len);
                let (yg, done) = rest.split_at_mut(2 * len);
                for i in 0..tiles / b.tw {
                    let base = i * b.tw;
                    let at = |ch: usize| &m[ch * tiles + base..];
                    rows_at(at(o), cout * tiles, b.tw, bias[o], ya);
                    if epi == Epilogue::Glu {
                        rows_at(at(o + half), cout * tiles, b.tw, bias[o + half], yg);
                    }
                    for y in 0..2 {
                        let f = 2 * (b.r0 + i) + y;
                        if f >= b.h {
                            break;
                        }
                        let a = &mut ya[y * len..][..b.w];
                        let row: &[f32] = match epi {
                            Epilogue::Glu => {
                                glu_slice(&mut done[..b.w], a, &yg[y * len..][..b.w]);
                                &done[..b.w]
                            }
                            Epilogue::Gelu => {
                                gelu_in_place(a);
                                a
                            }
                            Epilogue::None => a,
                        };
                        // SAFETY: row f of output channel o of this item is written by this
                        // task only, inside the `[cout_out, h, w]` planes `ds` points to
                        // (which may be uninitialised: written through the raw pointer).
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                row.as_ptr(),
                                ds.at(o * plane + f * b.w),
                                b.w,
                            )
                        };
                    }
                }
            },
        );
    }
}

/// One block of tile rows `r0..r0 + tiles / tw`.
struct Block {
    r0: usize,
    tiles: usize,
    tw: usize,
    h: usize,
    w: usize,
}

// Bᵀ over the four input rows `p` (each `len` long) into `q`.
simd!(rows_bt, (p: &[f32], q: &mut [f32], len: usize), {
    let (p0, rest) = p.split_at(len);
    let (p1, rest) = rest.split_at(len);
    let (p2, p3) = rest.split_at(len);
    let (q0, rest) = q.split_at_mut(len);
    let (q1, rest) = rest.split_at_mut(len);
    let (q2, q3) = rest.split_at_mut(len);
    for k in 0..len {
        q0[k] = p0[k] - p2[k];
        q1[k] = p1[k] + p2[k];
        q2[k] = p2[k] - p1[k];
        q3[k] = p1[k] - p3[k];
    }
});

// Bᵀ along one row: tile j reads columns 2j ..= 2j + 3 of the padded row.
simd!(columns_bt, (q: &[f32], v0: &mut [f32], v1: &mut [f32], v2: &mut [f32], v3: &mut [f32]), {
    for j in 0..v0.len() {
        let (a, b, c, d) = (q[2 * j], q[2 * j + 1], q[2 * j + 2], q[2 * j + 3]);
        v0[j] = a - c;
        v1[j] = b + c;
        v2[j] = c - b;
        v3[j] = b - d;
    }
});

// Aᵀ M A + bias for `tw` tiles of one output channel: the 16 products of value ξ start at
// `m[ξ·stride]`; output rows 0 and 1 of the tiles go to `y[..2tw]` and `y[2tw..]`.
simd!(rows_at, (m: &[f32], stride: usize, tw: usize, bias: f32, y: &mut [f32]), {
    let (y0, y1) = y.split_at_mut(2 * tw);
    let v = |xi: usize| &m[xi * stride..xi * stride + tw];
    let (m0, m1, m2, m3) = (v(0), v(1), v(2), v(3));
    let (m4, m5, m6, m7) = (v(4), v(5), v(6), v(7));
    let (m8, m9, m10, m11) = (v(8), v(9), v(10), v(11));
    let (m12, m13, m14, m15) = (v(12), v(13), v(14), v(15));
    for j in 0..tw {
        // Rows of Aᵀ M: s0 = M0 + M1 + M2, s1 = M1 - M2 - M3 (each over four columns).
        let s0 = [m0[j] + m4[j] + m8[j], m1[j] + m5[j] + m9[j], m2[j] + m6[j] + m10[j], m3[j] + m7[j] + m11[j]];
        let s1 = [m4[j] - m8[j] - m12[j], m5[j] - m9[j] - m13[j], m6[j] - m10[j] - m14[j], m7[j] - m11[j] - m15[j]];
        y0[2 * j] = s0[0] + s0[1] + s0[2] + bias;
        y0[2 * j + 1] = s0[1] - s0[2] - s0[3] + bias;
        y1[2 * j] = s1[0] + s1[1] + s1[2] + bias;
        y1[2 * j + 1] = s1[1] - s1[2] - s1[3] + bias;
    }
});
