//! Buffers that parallel tasks write in disjoint blocks, without locks or copies: the kernels'
//! tasks each own a rectangle of a row-major matrix (a head's columns of a block of queries,
//! a block of time steps of every channel, ...), which `par_chunks_mut` cannot express.
//!
//! A buffer is cut once into the blocks `row range × column range`; the cut is checked when
//! it is made (ranges in order, disjoint, inside the matrix) and each block is handed out at
//! most once, to one task, so the call sites need no `unsafe`. [`Blocks`] cuts an initialised
//! slice; [`Output`] is a new buffer that starts uninitialised (the kernels write every
//! element, and zeroing tens of MB first would cost a pass over memory) and becomes a `Vec`
//! only after the elements its blocks were given add up to its length.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Consecutive ranges of `step` covering `0..extent`, the last one possibly shorter.
pub(crate) fn every(extent: usize, step: usize) -> Vec<Range<usize>> {
    assert!(step > 0 || extent == 0, "ranges of 0");
    (0..extent)
        .step_by(step.max(1))
        .map(|s| s..(s + step).min(extent))
        .collect()
}

/// Row ranges of a `[b·n, ·]` matrix: each item's `n` rows in blocks of `block` (the last
/// block of each item possibly shorter).
pub(crate) fn item_blocks(b: usize, n: usize, block: usize) -> Vec<std::ops::Range<usize>> {
    (0..b)
        .flat_map(|bi| {
            every(n, block)
                .into_iter()
                .map(move |r| bi * n + r.start..bi * n + r.end)
        })
        .collect()
}

/// The one range `0..extent` (an axis that is not cut).
pub(crate) fn whole(extent: usize) -> Vec<Range<usize>> {
    std::iter::once(0..extent).collect()
}

/// A `rows × cols` matrix at `ptr` cut into blocks, each of which is taken at most once.
struct Cut {
    ptr: *mut f32,
    cols: usize,
    row_ranges: Vec<Range<usize>>,
    col_ranges: Vec<Range<usize>>,
    taken: Vec<AtomicBool>,
}

// SAFETY: a `Cut` only hands out pointers to blocks, each at most once (`take`), and blocks
// are disjoint, so sharing it between threads gives each block to one thread.
unsafe impl Send for Cut {}
// SAFETY: as above; `taken` is atomic.
unsafe impl Sync for Cut {}

/// Panics unless `ranges` are in order, disjoint and inside `0..extent`.
#[track_caller]
fn check_ranges(ranges: &[Range<usize>], extent: usize, axis: &str) {
    let mut end = 0;
    for r in ranges {
        assert!(
            end <= r.start && r.start <= r.end && r.end <= extent,
            "{axis} ranges must be ordered, disjoint and inside 0..{extent}: {ranges:?}"
        );
        end = r.end;
    }
}

impl Cut {
    #[track_caller]
    fn new(
        ptr: *mut f32,
        len: usize,
        (rows, cols): (usize, usize),
        row_ranges: Vec<Range<usize>>,
        col_ranges: Vec<Range<usize>>,
    ) -> Self {
        assert!(
            rows.checked_mul(cols).is_some_and(|n| n <= len),
            "a {rows}x{cols} matrix in {len} elements"
        );
        check_ranges(&row_ranges, rows, "row");
        check_ranges(&col_ranges, cols, "column");
        let blocks = row_ranges.len() * col_ranges.len();
        Self {
            ptr,
            cols,
            row_ranges,
            col_ranges,
            taken: (0..blocks).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Block `(i, j)`: its first element, rows and columns (rows `self.cols` apart).
    ///
    /// # Panics
    /// When there is no such block or it was taken before.
    #[track_caller]
    fn take(&self, i: usize, j: usize) -> (*mut f32, usize, usize) {
        assert!(
            i < self.row_ranges.len() && j < self.col_ranges.len(),
            "no block ({i}, {j})"
        );
        let first = self.taken[i * self.col_ranges.len() + j].swap(true, Ordering::Relaxed);
        assert!(!first, "block ({i}, {j}) taken twice");
        let (r, c) = (&self.row_ranges[i], &self.col_ranges[j]);
        let at = r.start * self.cols + c.start;
        (self.ptr.wrapping_add(at), r.len(), c.len())
    }
}

/// An initialised slice seen as a `rows × cols` matrix and cut into blocks for parallel tasks.
pub(crate) struct Blocks<'a> {
    cut: Cut,
    _data: PhantomData<&'a mut [f32]>,
}

impl<'a> Blocks<'a> {
    /// Blocks `row_ranges[i] × col_ranges[j]` of `data` as a `rows × cols` matrix.
    ///
    /// # Panics
    /// When the matrix is larger than `data`, or the ranges are out of order, overlap, or
    /// leave the matrix.
    #[track_caller]
    pub(crate) fn new(
        data: &'a mut [f32],
        shape: (usize, usize),
        row_ranges: Vec<Range<usize>>,
        col_ranges: Vec<Range<usize>>,
    ) -> Self {
        let cut = Cut::new(data.as_mut_ptr(), data.len(), shape, row_ranges, col_ranges);
        Self {
            cut,
            _data: PhantomData,
        }
    }

    /// Block `(i, j)`, to write from one task.
    ///
    /// # Panics
    /// When there is no such block or it was taken before.
    #[track_caller]
    pub(crate) fn take(&self, i: usize, j: usize) -> BlockMut<'_> {
        let (ptr, rows, cols) = self.cut.take(i, j);
        BlockMut {
            ptr,
            rows,
            cols,
            stride: self.cut.cols,
            _data: PhantomData,
        }
    }
}

/// One block of [`Blocks`], borrowed exclusively: `rows` rows of `cols` elements, `stride`
/// apart.
pub(crate) struct BlockMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    _data: PhantomData<&'a mut [f32]>,
}

impl<'a> BlockMut<'a> {
    /// Row `r` of the block.
    #[track_caller]
    pub(crate) fn row(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.rows, "row {r} of {}", self.rows);
        // SAFETY: the block's rows lie inside the slice `Blocks` borrows exclusively (checked
        // by `Cut::new`), no other block shares an element, and row r is borrowed through
        // `&mut self`, so nothing else can reach it meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.cols) }
    }

    /// Rows `first..first + N` at once.
    #[track_caller]
    pub(crate) fn rows<const N: usize>(&mut self, first: usize) -> [&mut [f32]; N] {
        assert!(
            first + N <= self.rows,
            "rows {first}.. +{N} of {}",
            self.rows
        );
        let (ptr, stride, cols) = (self.ptr, self.stride, self.cols);
        // SAFETY: as in `row`; the N rows are distinct and do not overlap (a block is at most
        // as wide as the matrix, `cols <= stride`), and all are borrowed through `&mut self`.
        std::array::from_fn(|k| unsafe {
            std::slice::from_raw_parts_mut(ptr.add((first + k) * stride), cols)
        })
    }

    /// Every row, in order, for the rest of the block's borrow.
    pub(crate) fn into_rows(self) -> impl Iterator<Item = &'a mut [f32]> {
        let (ptr, stride, cols) = (self.ptr, self.stride, self.cols);
        // SAFETY: as in `rows`: each row is yielded once, and the block (consumed here) was
        // the only way to reach them for 'a.
        (0..self.rows)
            .map(move |r| unsafe { std::slice::from_raw_parts_mut(ptr.add(r * stride), cols) })
    }

    /// The block as a matrix to multiply into.
    pub(crate) fn matrix(&mut self) -> crate::gemm::MatMut<'_> {
        // SAFETY: the block's elements are initialised (they belong to the slice `Blocks`
        // borrows), inside it, reached by nothing else while `self` is borrowed, and its rows
        // do not overlap.
        unsafe { crate::gemm::MatMut::from_raw(self.ptr, self.rows, self.cols, self.stride) }
    }
}

/// A new float32 buffer of `rows × cols` that parallel tasks write in full, block by block,
/// without zeroing it first.
pub(crate) struct Output {
    buf: Vec<f32>,
    len: usize,
    cut: Cut,
    written: AtomicUsize,
}

impl Output {
    /// A buffer cut into blocks `row_ranges[i] × col_ranges[j]`; they must cover it for
    /// [`Output::finish`] to succeed.
    ///
    /// # Panics
    /// When the ranges are out of order, overlap, or leave the matrix.
    #[track_caller]
    pub(crate) fn new(
        (rows, cols): (usize, usize),
        row_ranges: Vec<Range<usize>>,
        col_ranges: Vec<Range<usize>>,
    ) -> Self {
        let len = rows.checked_mul(cols).expect("output size");
        let mut buf = Vec::with_capacity(len);
        let cut = Cut::new(buf.as_mut_ptr(), len, (rows, cols), row_ranges, col_ranges);
        Self {
            buf,
            len,
            cut,
            written: AtomicUsize::new(0),
        }
    }

    /// Block `(i, j)`, to write from one task.
    ///
    /// # Panics
    /// When there is no such block or it was taken before.
    #[track_caller]
    pub(crate) fn take(&self, i: usize, j: usize) -> Writer<'_> {
        let (ptr, rows, cols) = self.cut.take(i, j);
        Writer {
            ptr,
            rows,
            cols,
            stride: self.cut.cols,
            row: 0,
            col: 0,
            done: 0,
            written: &self.written,
        }
    }

    /// The buffer, once every element has been written.
    ///
    /// # Panics
    /// When the blocks' writers wrote fewer elements than the buffer holds.
    #[track_caller]
    pub(crate) fn finish(self) -> Vec<f32> {
        let Output {
            mut buf,
            len,
            written,
            ..
        } = self;
        let written = written.into_inner();
        assert_eq!(written, len, "{written} of {len} output elements written");
        // SAFETY: the capacity is `len`; blocks are disjoint and each was taken at most once,
        // and each writer wrote elements of its own block, each at most once (`advance` moves
        // forward only), and counted those it wrote: `len` counted means all of them. The
        // writers borrowed `self`, so all of them have finished.
        unsafe { buf.set_len(len) };
        buf
    }
}

/// Writes the elements of one block of an [`Output`] once each, in row-major order.
pub(crate) struct Writer<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    /// The next element to write.
    row: usize,
    col: usize,
    /// Elements written.
    done: usize,
    written: &'a AtomicUsize,
}

impl Writer<'_> {
    /// The next run of at most `max` elements of the current row (an empty one when the block
    /// is full). The caller counts in `done` the ones it writes: places skipped (by a panic,
    /// or a short iterator) stay uncounted, so that [`Output::finish`] refuses the buffer.
    fn advance(&mut self, max: usize) -> (*mut f32, usize) {
        if self.col == self.cols && self.row < self.rows {
            self.row += 1;
            self.col = 0;
        }
        if self.row == self.rows {
            return (self.ptr, 0);
        }
        let n = max.min(self.cols - self.col);
        let at = self.ptr.wrapping_add(self.row * self.stride + self.col);
        self.col += n;
        (at, n)
    }

    /// Writes `values` at the next elements (across rows as needed).
    ///
    /// # Panics
    /// When they do not fit in the rest of the block.
    #[track_caller]
    pub(crate) fn push(&mut self, mut values: &[f32]) {
        while !values.is_empty() {
            let (at, n) = self.advance(values.len());
            assert!(n > 0, "writing past a {}x{} block", self.rows, self.cols);
            // SAFETY: `advance` returned a run of a row of this block, which lies inside the
            // buffer (`Cut::new`), belongs to this writer only and was not written before;
            // `values` is another allocation.
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), at, n) };
            self.done += n;
            values = &values[n..];
        }
    }

    /// Writes the values of `iter` at the next elements of the current row (as many as
    /// [`ExactSizeIterator::len`] says, and at most that many).
    ///
    /// # Panics
    /// When they do not fit in the rest of the row.
    #[track_caller]
    pub(crate) fn push_iter(&mut self, iter: impl ExactSizeIterator<Item = f32>) {
        let len = iter.len();
        let (at, n) = self.advance(len);
        assert_eq!(n, len, "{len} values for the {n} places left in the row");
        let mut count = 0;
        for (j, v) in iter.take(n).enumerate() {
            // SAFETY: as in `push`, element j < n of the run `advance` returned.
            unsafe { at.add(j).write(v) };
            count += 1;
        }
        self.done += count;
    }

    /// Writes `value` to every element not yet written.
    pub(crate) fn fill(&mut self, value: f32) {
        loop {
            let (at, n) = self.advance(usize::MAX);
            if n == 0 {
                break;
            }
            for j in 0..n {
                // SAFETY: as in `push`, element j < n of the run `advance` returned.
                unsafe { at.add(j).write(value) };
            }
            self.done += n;
        }
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.written.fetch_add(self.done, Ordering::Relaxed);
    }
}

/// `planes` planes of `len` floats, plane `i` filled with `value(i)`, in parallel and without
/// zeroing first (the outputs that kernels then accumulate into).
pub(crate) fn filled_planes(
    planes: usize,
    len: usize,
    value: impl Fn(usize) -> f32 + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let out = Output::new((planes, len), every(planes, 1), whole(len));
    (0..planes)
        .into_par_iter()
        .for_each(|i| out.take(i, 0).fill(value(i)));
    out.finish()
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use rayon::prelude::*;

    use super::*;

    #[test]
    fn ranges_cover_the_extent() {
        assert_eq!(every(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(every(8, 4), vec![0..4, 4..8]);
        assert!(every(0, 4).is_empty());
    }

    #[test]
    fn blocks_are_the_rectangles_of_the_cut() {
        // A 4x6 matrix in 25 elements: rows {0, 1..3}, columns {0..2, 3..6} (column 2 and
        // row 3 in no block).
        let mut data: Vec<f32> = vec![0.0; 25];
        let blocks = Blocks::new(&mut data, (4, 6), vec![0..1, 1..3], vec![0..2, 3..6]);
        (0..4).into_par_iter().for_each(|t| {
            let mut b = blocks.take(t / 2, t % 2);
            for r in 0.. {
                if r == 2 || (t < 2 && r == 1) {
                    break;
                }
                b.row(r).iter_mut().for_each(|x| *x += 1.0 + t as f32);
            }
        });
        drop(blocks);
        let want = [
            [1, 1, 0, 2, 2, 2],
            [3, 3, 0, 4, 4, 4],
            [3, 3, 0, 4, 4, 4],
            [0, 0, 0, 0, 0, 0],
        ];
        let want: Vec<f32> = want.iter().flatten().map(|v| *v as f32).collect();
        assert_eq!(&data[..24], &want[..]);
        assert_eq!(data[24], 0.0);
    }

    #[test]
    fn a_block_is_handed_out_once_and_cuts_are_checked() {
        let mut data = vec![0f32; 12];
        let blocks = Blocks::new(&mut data, (3, 4), every(3, 1), whole(4));
        let _first = blocks.take(1, 0);
        assert!(catch_unwind(AssertUnwindSafe(|| blocks.take(1, 0))).is_err());
        assert!(catch_unwind(AssertUnwindSafe(|| blocks.take(3, 0))).is_err());
        for (shape, rows) in [
            ((3, 4), vec![0..2, 1..3]),
            ((3, 4), vec![1..2, 0..1]),
            ((3, 4), whole(4)),
            ((4, 4), whole(1)),
        ] {
            let r = catch_unwind(AssertUnwindSafe(|| {
                Blocks::new(&mut data, shape, rows.clone(), whole(4));
            }));
            assert!(r.is_err(), "{shape:?} {rows:?}");
        }
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one block: rows 1..4, columns 1..3
    fn block_rows_and_matrix_stay_inside_the_block() {
        let mut data = vec![0f32; 20];
        let blocks = Blocks::new(&mut data, (4, 5), vec![1..4], vec![1..3]);
        let mut b = blocks.take(0, 0);
        let [a, c] = b.rows::<2>(1);
        a.fill(1.0);
        c.fill(2.0);
        assert!(catch_unwind(AssertUnwindSafe(|| b.rows::<2>(2).len())).is_err());
        let lhs = [1f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let rhs = [5f32, 6.0, 7.0, 8.0];
        crate::gemm::product(
            b.matrix(),
            crate::gemm::MatRef::new(&lhs, 3, 2, 2),
            crate::gemm::MatRef::new(&rhs, 2, 2, 2),
            true,
            crate::gemm::Threads::One,
        );
        let rows: Vec<Vec<f32>> = b.into_rows().map(|r| r.to_vec()).collect();
        assert_eq!(rows, [vec![5.0, 6.0], vec![8.0, 9.0], vec![14.0, 16.0]]);
        drop(blocks);
        assert_eq!(data.iter().filter(|v| **v != 0.0).count(), 6);
        assert_eq!(data[6..8], [5.0, 6.0]);
    }

    #[test]
    fn outputs_are_complete_or_refused() {
        // Rows of 5 in blocks of 2 rows x {0..3, 3..5}; a writer's pushes run across rows.
        let full = Output::new((4, 5), every(4, 2), vec![0..3, 3..5]);
        (0..4).into_par_iter().for_each(|t| {
            let mut w = full.take(t / 2, t % 2);
            let n = if t % 2 == 0 { 6 } else { 4 };
            let v: Vec<f32> = (0..n).map(|i| (10 * t + i) as f32).collect();
            w.push(&v[..1]);
            w.push(&v[1..]);
        });
        let v = full.finish();
        assert_eq!(&v[..5], &[0.0, 1.0, 2.0, 10.0, 11.0]);
        assert_eq!(&v[15..], &[23.0, 24.0, 25.0, 32.0, 33.0]);

        // A block left unwritten, or one written only in part, is refused.
        let partial = Output::new((2, 3), every(2, 1), whole(3));
        partial.take(0, 0).fill(1.0);
        assert!(catch_unwind(AssertUnwindSafe(|| partial.finish())).is_err());
        let partial = Output::new((2, 3), every(2, 1), whole(3));
        partial.take(0, 0).push(&[1.0, 2.0, 3.0]);
        partial.take(1, 0).push(&[1.0, 2.0]);
        assert!(catch_unwind(AssertUnwindSafe(|| partial.finish())).is_err());
        // Writing past a block panics.
        let out = Output::new((2, 3), every(2, 1), whole(3));
        let mut w = out.take(0, 0);
        assert!(catch_unwind(AssertUnwindSafe(|| w.push(&[0.0; 4]))).is_err());
        let mut w = out.take(1, 0);
        w.push_iter([1.0, 2.0].into_iter());
        assert!(catch_unwind(AssertUnwindSafe(|| w.push_iter([3.0, 4.0].into_iter()))).is_err());
    }

    #[test]
    fn planes_are_filled_with_their_values() {
        let v = filled_planes(3, 5, |i| i as f32 + 0.5);
        assert_eq!(v.len(), 15);
        for (i, plane) in v.chunks(5).enumerate() {
            assert!(plane.iter().all(|x| *x == i as f32 + 0.5));
        }
        assert!(filled_planes(0, 5, |_| 1.0).is_empty());
    }
}
