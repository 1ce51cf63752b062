//! The comparisons of the crate root for candle tensors: shapes must be equal, then values are
//! compared as float32 in row-major order (any dtype, any layout, any device).

use candle_core::{DType, Tensor};

use crate::{check_close, Mismatch};

/// The tensor's values as float32, row-major.
///
/// # Panics
/// When candle cannot convert them (a test helper: the message names the tensor).
pub fn values(what: &str, t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
        .unwrap_or_else(|e| panic!("{what}: cannot read the tensor: {e}"))
}

/// [`check_close`] for tensors, after their shapes are compared.
pub fn check_tensor_close(got: &Tensor, want: &Tensor, bound: f32) -> Result<f32, Mismatch> {
    if got.dims() != want.dims() {
        return Err(Mismatch::Shape {
            got: got.dims().to_vec(),
            want: want.dims().to_vec(),
        });
    }
    check_close(&values("got", got), &values("want", want), bound)
}

/// [`crate::assert_close`] for tensors: panics, naming `what`, unless the shapes are equal and
/// the values finite and within `bound`. Returns the largest difference.
#[track_caller]
pub fn assert_tensor_close(what: &str, got: &Tensor, want: &Tensor, bound: f32) -> f32 {
    match check_tensor_close(got, want, bound) {
        Ok(d) => d,
        Err(e) => panic!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn shapes_then_values() {
        let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        assert!(matches!(
            check_tensor_close(&a, &t(&[1.0, 2.0, 3.0, 4.0], &[4]), 1.0),
            Err(Mismatch::Shape { .. })
        ));
        let d = check_tensor_close(&a, &t(&[1.0, 2.0, 3.0, 4.5], &[2, 2]), 1.0).unwrap();
        assert_eq!(d, 0.5);
        // Another dtype and a transposed view are read as values in row-major order.
        let f64s = a.t().unwrap().to_dtype(DType::F64).unwrap();
        assert_eq!(
            check_tensor_close(&f64s, &t(&[1.0, 3.0, 2.0, 4.0], &[2, 2]), 0.0),
            Ok(0.0)
        );
    }

    #[test]
    #[should_panic(expected = "spec: non-finite NaN at index 1")]
    fn nan_in_a_tensor_fails() {
        let got = t(&[0.0, f32::NAN], &[2]);
        assert_tensor_close("spec", &got, &t(&[0.0, 0.0], &[2]), 1.0);
    }
}
