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

use crate::fast::{gelu_in_place, glu_slice, Reused};
use crate::gemm::{product, MatMut, MatRef, Threads};
use crate::parallel::{every, whole, Blocks, Output};
use crate::simd;

/// What runs on the convolution's output before it is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// GELU (erf form).
    Gelu,
    /// Gated linear unit over channels: the first half × sigmoid(the second half).
    Glu,
}

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
        // Output channel o of an item, in bands of `rows` tile rows (2·rows output rows).
        let out = Output::new(
            (n * cout_out, plane),
            every(n * cout_out, 1),
            every(plane, 2 * rows * w),
        );
        for item in 0..n {
            let x = &x[item * cin * plane..][..cin * plane];
            let skip = skip.map(|s| &s[item * cin * plane..][..cin * plane]);
            for (band, r0) in (0..th).step_by(rows).enumerate() {
                let tiles = rows.min(th - r0) * tw;
                let block = Block {
                    r0,
                    tiles,
                    tw,
                    h,
                    w,
                };
                self.inputs(&block, x, skip, &mut v[..VALUES * cin * tiles]);
                // Value ξ's product reads U[ξ] (`[cout, cin]`) and its `[cin, tiles]` slice of
                // v, and writes its own `[cout, tiles]` slice of m.
                m[..VALUES * cout * tiles]
                    .par_chunks_mut(cout * tiles)
                    .zip(v[..VALUES * cin * tiles].par_chunks(cin * tiles))
                    .enumerate()
                    .for_each(|(xi, (mi, vi))| {
                        product(
                            MatMut::new(mi, cout, tiles, tiles),
                            MatRef::new(&self.u[xi * cout * cin..], cout, cin, cin),
                            MatRef::new(vi, cin, tiles, tiles),
                            false,
                            Threads::One,
                        )
                    });
                self.outputs(&block, &m, bias, (&out, item * cout_out, band), epi);
            }
        }
        out.finish()
    }

    /// `V = Bᵀ d B` of every tile in the block, `[16][cin][tiles]`.
    fn inputs(&self, b: &Block, x: &[f32], skip: Option<&[f32]>, v: &mut [f32]) {
        let (cin, tiles, plane) = (self.cin, b.tiles, b.h * b.w);
        // Task c writes channel c's tiles of all 16 values: `[16][cin][tiles]` seen as a
        // `[16, cin·tiles]` matrix, columns c·tiles..(c+1)·tiles.
        let vs = Blocks::new(
            v,
            (VALUES, cin * tiles),
            whole(VALUES),
            every(cin * tiles, tiles),
        );
        (0..cin).into_par_iter().for_each_init(
            || vec![0f32; 8 * (2 * b.tw + 2)],
            |rowbuf, c| {
                let x = &x[c * plane..][..plane];
                let skip = skip.map(|s| &s[c * plane..][..plane]);
                let len = 2 * b.tw + 2;
                let mut vc = vs.take(0, c);
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
                        // Values 4a..4a+4, tiles i·tw..(i+1)·tw.
                        let [v0, v1, v2, v3] = vc.rows::<4>(4 * a);
                        let cols = i * b.tw..(i + 1) * b.tw;
                        columns_bt(
                            qa,
                            &mut v0[cols.clone()],
                            &mut v1[cols.clone()],
                            &mut v2[cols.clone()],
                            &mut v3[cols],
                        );
                    }
                }
            },
        );
    }

    /// `Y = Aᵀ M A` + bias of every tile, then the epilogue, into the output: band `band` of
    /// rows `first..` (one per output channel) of `out`.
    fn outputs(
        &self,
        b: &Block,
        m: &[f32],
        bias: &[f32],
        (out, first, band): (&Output, usize, usize),
        epi: Epilogue,
    ) {
        let (cout, tiles) = (self.cout, b.tiles);
        let half = cout / 2;
        let channels = if epi == Epilogue::Glu { half } else { cout };
        let len = 2 * b.tw;
        (0..channels).into_par_iter().for_each_init(
            || vec![0f32; 5 * len],
            |buf, o| {
                let (ya, rest) = buf.split_at_mut(2 * len);
                let (yg, done) = rest.split_at_mut(2 * len);
                // Rows 2·r0.. of output channel o, in order.
                let mut dst = out.take(first + o, band);
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
                        dst.push(row);
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
