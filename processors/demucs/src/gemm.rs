//! Matrix products on the CPU through the `gemm` crate, over checked views: a [`MatRef`] or
//! [`MatMut`] is a row-major matrix inside a slice (rows at a stride, so a view may be a block
//! of columns of a wider matrix), and its constructor asserts that every element it addresses
//! lies inside the slice. [`product`] then only has to check that the shapes agree, and the
//! borrow of the destination rules out aliasing, so the kernels call it without `unsafe`.

use std::marker::PhantomData;

/// Whether `rows × cols` at row stride `stride` fits in `len` elements, with rows that do not
/// overlap (a stride below the width is only allowed for a single row).
fn fits(len: usize, rows: usize, cols: usize, stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let end = (rows - 1)
        .checked_mul(stride)
        .and_then(|s| s.checked_add(cols));
    (rows == 1 || cols <= stride) && matches!(end, Some(end) if end <= len)
}

/// A row-major `rows × cols` matrix read from a slice, rows `stride` apart.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a> MatRef<'a> {
    /// # Panics
    /// When the matrix does not lie inside `data`.
    #[track_caller]
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, stride),
            "matrix {rows}x{cols} at stride {stride} outside {} elements",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            stride,
        }
    }
}

/// A row-major `rows × cols` matrix written into memory it borrows exclusively, rows `stride`
/// apart (the elements between rows are neither read nor written).
pub(crate) struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    _data: PhantomData<&'a mut [f32]>,
}

impl<'a> MatMut<'a> {
    /// # Panics
    /// When the matrix does not lie inside `data`.
    #[track_caller]
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, stride),
            "matrix {rows}x{cols} at stride {stride} outside {} elements",
            data.len()
        );
        Self {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            stride,
            _data: PhantomData,
        }
    }

    /// A view of memory the caller holds exclusively for `'a` without a slice over all of it
    /// (a block of a buffer that parallel tasks share: [`crate::parallel`]).
    ///
    /// # Safety
    /// For `'a`, `ptr` must be valid for reads and writes of every element `r · stride + c`
    /// (`r < rows`, `c < cols`), those elements initialised, and no other reference may access
    /// them; rows must not overlap (`cols <= stride` when `rows > 1`).
    pub(crate) unsafe fn from_raw(ptr: *mut f32, rows: usize, cols: usize, stride: usize) -> Self {
        debug_assert!(rows <= 1 || cols <= stride, "overlapping rows");
        Self {
            ptr,
            rows,
            cols,
            stride,
            _data: PhantomData,
        }
    }
}

/// How many threads one product runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// Every rayon thread (a product that is the whole step).
    All,
    /// The calling thread (inside tasks that are already parallel).
    One,
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`.
///
/// # Panics
/// When the shapes do not agree: `dst` `[m, n]`, `lhs` `[m, k]`, `rhs` `[k, n]`.
#[track_caller]
pub(crate) fn product(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "product of {}x{} and {}x{} into {m}x{n}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    let par = match threads {
        Threads::All if rayon::current_num_threads() > 1 => {
            ::gemm::Parallelism::Rayon(rayon::current_num_threads())
        }
        _ => ::gemm::Parallelism::None,
    };
    // SAFETY: the constructors checked that each view's elements lie inside its memory (a
    // slice, or for `from_raw` the caller's guarantee), and the shapes were checked above,
    // so the gemm reads `m·k` elements of `lhs` and `k·n` of `rhs` and writes `m·n` of `dst`,
    // all at their own strides. `dst` is borrowed exclusively, so it aliases neither input,
    // and its rows do not overlap, so the gemm's threads write disjoint elements.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            1,
            lhs.stride as isize,
            rhs.data.as_ptr(),
            1,
            rhs.stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_must_fit_their_slices() {
        assert!(fits(10, 2, 3, 7));
        assert!(!fits(9, 2, 3, 7));
        assert!(fits(0, 0, 5, 5) && fits(0, 5, 0, 5));
        // One row may be wider than the stride; two rows may not overlap.
        assert!(fits(4, 1, 4, 0));
        assert!(!fits(8, 2, 4, 3));
        assert!(!fits(usize::MAX, 3, 1, usize::MAX));
        let data = [0f32; 6];
        assert!(std::panic::catch_unwind(|| MatRef::new(&data, 2, 3, 4)).is_err());
    }

    #[test]
    fn products_of_column_blocks_match_the_definition() {
        // A 2x3 block of a 3x5 matrix times a 3x2 block of a 4x4 one, into columns 1..3 of a
        // 2x4 output that already holds values (accumulated, then overwritten).
        let a: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..16).map(|i| (i as f32).sin()).collect();
        let mut out = [1f32; 8];
        let want = |acc: f32, r: usize, c: usize| {
            acc + (0..3)
                .map(|j| a[r * 5 + 1 + j] * b[j * 4 + 2 + c])
                .sum::<f32>()
        };
        for accumulate in [true, false] {
            product(
                MatMut::new(&mut out[1..], 2, 2, 4),
                MatRef::new(&a[1..], 2, 3, 5),
                MatRef::new(&b[2..], 3, 2, 4),
                accumulate,
                Threads::All,
            );
            let base = if accumulate { 1.0 } else { 0.0 };
            for r in 0..2 {
                for c in 0..2 {
                    let got = out[r * 4 + 1 + c];
                    assert!((got - want(base, r, c)).abs() < 1e-5, "{r} {c}: {got}");
                }
                // Columns outside the view are untouched.
                assert_eq!((out[r * 4], out[r * 4 + 3]), (1.0, 1.0));
            }
            out[1..3].fill(7.0);
            out[5..7].fill(7.0);
        }
    }

    #[test]
    #[should_panic(expected = "product of 2x3 and 2x2")]
    fn disagreeing_shapes_panic() {
        let (a, b, mut c) = ([0f32; 6], [0f32; 4], [0f32; 4]);
        product(
            MatMut::new(&mut c, 2, 2, 2),
            MatRef::new(&a, 2, 3, 3),
            MatRef::new(&b, 2, 2, 2),
            false,
            Threads::One,
        );
    }
}
