//! Small numeric helpers shared by the analyses.

/// Median of the finite values (`None` when there is none). Sorts a copy.
pub(crate) fn median(values: impl IntoIterator<Item = f32>) -> Option<f32> {
    let mut v: Vec<f32> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// Pearson correlation of two equally long slices; `None` when either is
/// constant (no variance to correlate).
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    let denom = (saa * sbb).sqrt();
    (denom > 1e-12 && denom.is_finite()).then(|| (sab / denom).clamp(-1.0, 1.0))
}

/// Offset in (-0.5, 0.5) of the vertex of the parabola through three
/// neighbouring samples, for sub-sample peak positions.
pub(crate) fn parabolic_offset(left: f64, centre: f64, right: f64) -> f64 {
    let denom = left - 2.0 * centre + right;
    if denom.abs() < 1e-12 || !denom.is_finite() {
        return 0.0;
    }
    (0.5 * (left - right) / denom).clamp(-0.5, 0.5)
}

/// Replaces a non-finite value with `fallback`, so serialised output never
/// holds a NaN (JSON has none).
pub(crate) fn finite_or(x: f32, fallback: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_skips_nan_and_averages_even() {
        assert_eq!(median([3.0, f32::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median([f32::NAN]), None);
    }

    #[test]
    fn pearson_of_constant_is_none() {
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        let r = pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
    }

    #[test]
    fn parabola_finds_vertex() {
        // y = -(x - 0.25)^2 sampled at -1, 0, 1.
        let f = |x: f64| -(x - 0.25) * (x - 0.25);
        assert!((parabolic_offset(f(-1.0), f(0.0), f(1.0)) - 0.25).abs() < 1e-12);
    }
}
