//! A 1-D convolution with a small weight matrix along long rows, as AVX-512 register tiles:
//! DConv's dilated conv (`channels → channels / 8`, 3 taps) and its 1x1 conv back up. With
//! only 6–96 output rows and 6–384 input rows, a general gemm spends its time packing, and a
//! row-by-row multiply-add makes three memory accesses per multiply. Here a tile is six output
//! rows × 64 positions held in 24 vector registers; each (input row, tap) step loads four
//! vectors of the source row (masked at the item's edges, which reads as zero padding) and
//! broadcasts six weights.

use std::arch::x86_64::*;

/// Output rows per register tile.
pub(crate) const ROWS: usize = 6;
/// Positions per register tile (four vectors).
const WIDTH: usize = 64;
/// Taps per kernel the tile's mask table holds.
const MAX_TAPS: usize = 8;

/// Whether this CPU can run [`conv`].
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// Weights `[rows][cin][k]` (PyTorch's conv1d layout) repacked for [`conv`]:
/// `[tiles][cin][k][ROWS]`, with the bias padded to whole tiles. Rows past `rows` are zero.
pub(crate) struct Packed {
    w: Vec<f32>,
    bias: Vec<f32>,
    rows: usize,
    cin: usize,
    k: usize,
}

impl Packed {
    pub(crate) fn new(w: &[f32], bias: &[f32], cin: usize, k: usize) -> Self {
        let rows = bias.len();
        assert_eq!(w.len(), rows * cin * k, "conv weights [rows, cin, k]");
        assert!(k <= MAX_TAPS, "at most {MAX_TAPS} taps");
        let tiles = rows.div_ceil(ROWS);
        let mut packed = vec![0f32; tiles * cin * k * ROWS];
        for r in 0..rows {
            for q in 0..cin * k {
                packed[((r / ROWS) * cin * k + q) * ROWS + r % ROWS] = w[r * cin * k + q];
            }
        }
        let mut b = bias.to_vec();
        b.resize(tiles * ROWS, 0.0);
        Self {
            w: packed,
            bias: b,
            rows,
            cin,
            k,
        }
    }
}

/// Where a convolution reads: `cin` rows of `x` at stride `stride`, each `len` long (zero
/// outside), output position `p` reading `x[row][start + p + shift]` for each tap's shift.
pub(crate) struct Source<'a> {
    pub x: &'a [f32],
    pub stride: usize,
    pub len: usize,
    pub start: usize,
    pub shifts: &'a [isize],
}

/// `out[r][p] = bias[r] + Σ_{c,j} w[r][c][j] · x[c][start + p + shift_j]` for every row `r`
/// of `w` and `p < width`, `out` rows at stride `width`.
///
/// # Panics
/// If the shapes disagree ([`available`] must be true).
pub(crate) fn conv(w: &Packed, src: &Source, out: &mut [f32], width: usize) {
    assert!(available(), "conv kernel needs AVX-512");
    assert_eq!(src.shifts.len(), w.k, "one shift per tap");
    assert!(out.len() >= w.rows * width, "output rows");
    assert!(
        src.cin_fits(w.cin),
        "source rows: {} floats for {} rows of stride {} and length {}",
        src.x.len(),
        w.cin,
        src.stride,
        src.len
    );
    let per_tile = w.cin * w.k * ROWS;
    for (tile, bias) in w.bias.chunks_exact(ROWS).enumerate() {
        let r0 = tile * ROWS;
        let rows = ROWS.min(w.rows - r0);
        for p0 in (0..width).step_by(WIDTH) {
            // SAFETY: AVX-512 was checked; the weights read are this tile's block, the source
            // is read only at masked-in indices 0..len of the cin rows checked above, and
            // the output only at rows r0..r0+rows, columns p0..min(p0+64, width).
            unsafe {
                tile_kernel(
                    w.w[tile * per_tile..].as_ptr(),
                    bias.as_ptr(),
                    src,
                    w.cin,
                    p0,
                    out[r0 * width..].as_mut_ptr(),
                    width,
                    rows,
                )
            }
        }
    }
}

impl Source<'_> {
    fn cin_fits(&self, cin: usize) -> bool {
        cin == 0 || self.x.len() >= (cin - 1) * self.stride + self.len
    }
}

/// Lanes `i` of a vector whose source indices `first + i` lie in `0..len`.
#[inline(always)]
fn lanes(first: isize, len: usize) -> __mmask16 {
    let lo = (-first).clamp(0, 16) as u32;
    let hi = (len as isize - first).clamp(0, 16) as u32;
    if lo >= hi {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }
}

/// One tile: `rows` (≤ 6) output rows × positions `p0..p0+64` (clipped to `width`).
///
/// # Safety
/// AVX-512F; `w` is a tile's packed `[cin][k][ROWS]` block, `bias` `ROWS` floats, `out` the
/// tile's first output row with rows at stride `width`, and `src` describes readable rows.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn tile_kernel(
    w: *const f32,
    bias: *const f32,
    src: &Source,
    cin: usize,
    p0: usize,
    out: *mut f32,
    width: usize,
    rows: usize,
) {
    // SAFETY: the caller guarantees AVX-512F and the extents of `w`, `bias` and `out`
    // (this function's contract); source rows are read only in lanes whose index lies in
    // 0..len of a row (`lanes`), and output lanes past `width` are masked off.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; ROWS];
        for (r, row) in acc.iter_mut().enumerate() {
            *row = [_mm512_set1_ps(*bias.add(r)); 4];
        }
        let k = src.shifts.len();
        // Masks per (tap, vector), and the offset of the tap's first source element.
        let mut masks = [[0 as __mmask16; 4]; MAX_TAPS];
        let mut offs = [0isize; MAX_TAPS];
        for (j, &shift) in src.shifts.iter().enumerate() {
            offs[j] = (src.start + p0) as isize + shift;
            for (v, m) in masks[j].iter_mut().enumerate() {
                *m = lanes(offs[j] + 16 * v as isize, src.len);
            }
        }
        let x = src.x.as_ptr();
        for c in 0..cin {
            let row = x.add(c * src.stride);
            for j in 0..k {
                let at = row.wrapping_offset(offs[j]);
                let m = &masks[j];
                let xv = [
                    _mm512_maskz_loadu_ps(m[0], at),
                    _mm512_maskz_loadu_ps(m[1], at.wrapping_add(16)),
                    _mm512_maskz_loadu_ps(m[2], at.wrapping_add(32)),
                    _mm512_maskz_loadu_ps(m[3], at.wrapping_add(48)),
                ];
                let wq = w.add((c * k + j) * ROWS);
                for (r, row) in acc.iter_mut().enumerate() {
                    let wr = _mm512_set1_ps(*wq.add(r));
                    for (a, xv) in row.iter_mut().zip(&xv) {
                        *a = _mm512_fmadd_ps(wr, *xv, *a);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            for (v, a) in row.iter().enumerate() {
                let m = lanes((p0 + 16 * v) as isize, width);
                // Masked-off lanes are not written (nor is their address dereferenced).
                _mm512_mask_storeu_ps(out.wrapping_add(r * width + p0 + 16 * v), m, *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time.
    fn direct(w: &[f32], b: &[f32], cin: usize, src: &Source, width: usize) -> Vec<f32> {
        let (rows, k) = (b.len(), src.shifts.len());
        let mut out = vec![0f32; rows * width];
        for r in 0..rows {
            for p in 0..width {
                let mut acc = f64::from(b[r]);
                for c in 0..cin {
                    for (j, shift) in src.shifts.iter().enumerate() {
                        let i = (src.start + p) as isize + shift;
                        if (0..src.len as isize).contains(&i) {
                            let x = src.x[c * src.stride + i as usize];
                            acc += f64::from(w[(r * cin + c) * k + j]) * f64::from(x);
                        }
                    }
                }
                out[r * width + p] = acc as f32;
            }
        }
        out
    }

    /// Uneven row tiles (13 rows), a ragged last vector (width 130), sources read across
    /// both edges (start 0 and start 70 running past the end) with dilated taps, rows at a
    /// stride longer than their length, and a 1x1 conv.
    #[test]
    fn tiles_match_the_definition() {
        // Only the AVX-512 kernel is tested here (other CPUs run the row loops in `dconv`,
        // which its tests compare with candle's ops).
        roar_testkit::kernel_ran("dconv tiles", available());
        if !available() {
            return;
        }
        let seq = |n: usize, s: f32| -> Vec<f32> {
            (0..n).map(|i| (i as f32 * 0.37 + s).sin()).collect()
        };
        let (rows, cin, len, stride) = (13, 5, 150, 160);
        let x = seq(cin * stride, 0.1);
        for (k, shifts, start, width) in [
            (3, vec![-2isize, 0, 2], 0, 130),
            (3, vec![-2, 0, 2], 70, 100),
            (1, vec![0], 3, 64),
        ] {
            let (w, b) = (seq(rows * cin * k, 1.3), seq(rows, 2.9));
            let src = Source {
                x: &x,
                stride,
                len,
                start,
                shifts: &shifts,
            };
            let mut got = vec![f32::NAN; rows * width];
            conv(&Packed::new(&w, &b, cin, k), &src, &mut got, width);
            let want = direct(&w, &b, cin, &src, width);
            // Pre-filled with NaN: an output the kernel does not write fails here.
            roar_testkit::assert_close(&format!("k {k}, start {start}"), &got, &want, 1e-5);
        }
    }

    #[test]
    fn edge_masks_select_the_lanes_inside() {
        assert_eq!(lanes(0, 100), 0xffff);
        assert_eq!(lanes(-2, 100), 0xfffc);
        assert_eq!(lanes(90, 100), 0x03ff);
        assert_eq!(lanes(-20, 100), 0);
        assert_eq!(lanes(100, 100), 0);
        assert_eq!(lanes(-1, 3), 0b1110);
    }
}
