//! Branch-free float32 approximations of `exp`, `erf`, GELU and the sigmoid, written without
//! libm calls so that loops of them vectorise (libm's scalar `exp`/`erf` are what make
//! candle's element-wise ops slow here); accurate to a few float32 ulps.

/// `exp(x)` for float32 via 2^n · p(r), |r| ≤ ln2/2, degree-6 polynomial (≈2 ulp). Written
/// without libm calls or branches (rounding by the 1.5·2^23 trick) so loops of it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    // Above ≈ 88.37 the 2^n factor would leave float32's exponent range.
    let x = x.clamp(-87.3, 88.37);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // Two-part ln2 keeps the reduction exact enough in float32.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let k = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    p * f32::from_bits(((k + 127) as u32) << 23)
}

/// `erf(x)` (Abramowitz & Stegun 7.1.26; max error ≈ 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_72) * t
            + 0.254_829_6)
            * t
            * exp(-a * a);
    y.copysign(x)
}

/// GELU with the exact (erf) form, as `F.gelu`'s default.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximations_track_libm() {
        for i in -2000..2000 {
            let x = i as f32 * 0.01;
            let e = exp(x);
            assert!(((e - x.exp()) / x.exp()).abs() < 1e-6, "exp({x})");
            let g = gelu(x);
            let want = 0.5 * f64::from(x) * (1.0 + libm_erf(f64::from(x) / 2f64.sqrt()));
            assert!(
                (f64::from(g) - want).abs() < 1e-6,
                "gelu({x}) {g} vs {want}"
            );
        }
    }

    #[test]
    fn exp_stays_finite_to_the_top_of_its_range() {
        for x in [88.0f32, 88.37, 88.5, 88.7, 1e6] {
            assert!(exp(x).is_finite(), "exp({x}) = {}", exp(x));
        }
        assert!(((exp(88.0) - 88f32.exp()) / 88f32.exp()).abs() < 1e-6);
    }

    fn libm_erf(x: f64) -> f64 {
        // erf by its Taylor series for |x| < 3, 1 - erfc asymptotics beyond: test-only.
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
