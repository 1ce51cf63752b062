//! Comparisons for the model crates' fidelity and kernel tests. `f32::max` and candle's `max`
//! skip NaN, so a "largest difference" folded with them reports a partly-NaN output as close;
//! every helper here treats a non-finite value on either side as a failure instead, and says
//! where it is. Dev-dependency only: nothing in a release build uses it.
//!
//! [`kernel_ran`] is for tests of kernels that only run on some CPUs: it says which kernel ran,
//! and fails when [`REQUIRE_AVX512`] asks for the AVX-512 one on a machine where it could not.
//! With the `candle` feature, [`tensor`] compares candle tensors the same way; with `fuzz`,
//! `fuzz` has the fuzz harnesses' strategies and runner; with `audio`, `audio` reads committed
//! FLAC fixtures. [`bench`] runs a benchmark with the demucs worker's allocator settings.

use std::fmt;

#[cfg(feature = "audio")]
pub mod audio;
pub mod bench;
#[cfg(feature = "fuzz")]
pub mod fuzz;
#[cfg(feature = "candle")]
pub mod tensor;

/// Why two buffers are not close.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// The buffers differ in length.
    Length { got: usize, want: usize },
    /// The tensors differ in shape.
    Shape { got: Vec<usize>, want: Vec<usize> },
    /// A value that is NaN or infinite, on the side named.
    NonFinite {
        index: usize,
        side: &'static str,
        value: f32,
    },
    /// The largest difference is above the bound.
    TooFar {
        index: usize,
        got: f32,
        want: f32,
        diff: f32,
        bound: f32,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Length { got, want } => write!(f, "length {got}, expected {want}"),
            Mismatch::Shape { got, want } => write!(f, "shape {got:?}, expected {want:?}"),
            Mismatch::NonFinite { index, side, value } => {
                write!(f, "non-finite {value} at index {index} ({side})")
            }
            Mismatch::TooFar {
                index,
                got,
                want,
                diff,
                bound,
            } => write!(
                f,
                "max abs diff {diff:e} > {bound:e} at index {index} (got {got}, want {want})"
            ),
        }
    }
}

/// Largest absolute difference and where it is; an error for unequal lengths or any
/// non-finite value in either slice. Two empty slices are 0 apart.
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> Result<(f32, usize), Mismatch> {
    if got.len() != want.len() {
        return Err(Mismatch::Length {
            got: got.len(),
            want: want.len(),
        });
    }
    let mut worst = (0.0f32, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        for (side, v) in [("got", g), ("want", w)] {
            if !v.is_finite() {
                return Err(Mismatch::NonFinite {
                    index: i,
                    side,
                    value: v,
                });
            }
        }
        let d = (g - w).abs();
        if d > worst.0 {
            worst = (d, i);
        }
    }
    Ok(worst)
}

/// The largest absolute difference when it is at most `bound`, else why not.
pub fn check_close(got: &[f32], want: &[f32], bound: f32) -> Result<f32, Mismatch> {
    let (diff, index) = max_abs_diff(got, want)?;
    if diff > bound {
        return Err(Mismatch::TooFar {
            index,
            got: got[index],
            want: want[index],
            diff,
            bound,
        });
    }
    Ok(diff)
}

/// Panics, naming `what`, unless `got` and `want` are finite, equally long and within `bound`
/// of each other everywhere. Returns the largest difference for reports.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], bound: f32) -> f32 {
    match check_close(got, want, bound) {
        Ok(d) => d,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Panics, naming `what`, if any value is NaN or infinite.
#[track_caller]
pub fn assert_finite(what: &str, values: &[f32]) {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        panic!("{what}: non-finite {} at index {i}", values[i]);
    }
}

/// The environment variable that makes [`kernel_ran`] fail when the AVX-512 kernel could not
/// run: CI sets it to `1` on hosts whose CPU has `avx512f`, so that a detection bug or a
/// missing build feature cannot turn the kernel tests into tests of the fallback only.
pub const REQUIRE_AVX512: &str = "ROAR_REQUIRE_AVX512";

/// Prints which kernel `test` ran (`avx512`: the AVX-512 one, else the portable one) and panics
/// when [`REQUIRE_AVX512`] is `1` and the AVX-512 kernel did not run.
#[track_caller]
pub fn kernel_ran(test: &str, avx512: bool) {
    let required = std::env::var(REQUIRE_AVX512).is_ok_and(|v| v == "1");
    match kernel_report(test, avx512, required) {
        Ok(line) => eprintln!("{line}"),
        Err(e) => panic!("{e}"),
    }
}

/// [`kernel_ran`]'s decision: the line to print, or why the test must fail.
pub fn kernel_report(test: &str, avx512: bool, required: bool) -> Result<String, String> {
    match (avx512, required) {
        (true, _) => Ok(format!("{test}: ran the AVX-512 kernel")),
        (false, false) => Ok(format!(
            "{test}: ran the portable kernel (the AVX-512 one cannot run here)"
        )),
        (false, true) => Err(format!(
            "{test}: {REQUIRE_AVX512}=1 but the AVX-512 kernel did not run"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_slices_are_zero_apart() {
        assert_eq!(max_abs_diff(&[1.0, -2.0], &[1.0, -2.0]), Ok((0.0, 0)));
        assert_eq!(max_abs_diff(&[], &[]), Ok((0.0, 0)));
    }

    #[test]
    fn finds_the_worst_index() {
        let (d, i) = max_abs_diff(&[1.0, 2.0, 3.0], &[1.0, 2.5, 3.1]).unwrap();
        assert_eq!(i, 1);
        assert!((d - 0.5).abs() < 1e-6);
    }

    #[test]
    fn nan_on_either_side_fails() {
        // The folds this replaces (`fold(0.0, f32::max)`) report 0.0 here.
        let err = max_abs_diff(&[0.0, f32::NAN], &[0.0, 0.0]).unwrap_err();
        assert!(matches!(
            err,
            Mismatch::NonFinite {
                index: 1,
                side: "got",
                ..
            }
        ));
        assert!(matches!(
            max_abs_diff(&[0.0], &[f32::NAN]),
            Err(Mismatch::NonFinite { side: "want", .. })
        ));
        assert!(check_close(&[f32::INFINITY], &[f32::INFINITY], 1.0).is_err());
    }

    #[test]
    fn length_and_bound() {
        assert!(matches!(
            max_abs_diff(&[0.0], &[]),
            Err(Mismatch::Length { got: 1, want: 0 })
        ));
        assert!(matches!(
            check_close(&[0.0, 1.0], &[0.0, 1.2], 0.1),
            Err(Mismatch::TooFar { index: 1, .. })
        ));
        assert!(check_close(&[0.0, 1.0], &[0.0, 1.05], 0.1).is_ok());
    }

    #[test]
    #[should_panic(expected = "logits: non-finite")]
    fn assert_close_panics_on_nan() {
        assert_close("logits", &[f32::NAN], &[f32::NAN], 1.0);
    }

    #[test]
    fn kernel_report_fails_only_when_avx512_was_required_and_missed() {
        assert!(kernel_report("t", true, true).unwrap().contains("AVX-512"));
        assert!(kernel_report("t", false, false)
            .unwrap()
            .contains("portable"));
        let err = kernel_report("t", false, true).unwrap_err();
        assert!(err.contains(REQUIRE_AVX512), "{err}");
    }

    #[test]
    #[should_panic(expected = "stem: non-finite inf at index 2")]
    fn assert_finite_names_the_index() {
        assert_finite("stem", &[0.0, 1.0, f32::INFINITY]);
    }
}
