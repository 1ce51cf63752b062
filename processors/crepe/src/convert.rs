//! Pitch unit conversions, as torchcrepe defines them.
//!
//! Bin `b` of the 360-bin output sits at `20 * b + 1997.379...` cents, where
//! cents are measured from 10 Hz: `hz = 10 * 2^(cents / 1200)`. Bin 0 is about
//! 31.7 Hz, bin 359 about 2005.5 Hz.
//!
//! torchcrepe adds a random triangular dither of +-20 cents when turning bins
//! into cents; this crate leaves it out so that results are deterministic.

/// Width of one pitch bin in cents.
pub const CENTS_PER_BIN: f64 = 20.0;
/// Cents (re 10 Hz) of bin 0.
pub const CENTS_OFFSET: f64 = 1_997.379_408_437_619;
/// Highest frequency torchcrepe lets a caller ask for.
pub const MAX_FMAX: f32 = 2006.0;

/// Cents (re 10 Hz) at the centre of a (possibly fractional) bin.
pub fn bin_to_cents(bin: f64) -> f64 {
    CENTS_PER_BIN * bin + CENTS_OFFSET
}

/// Frequency in Hz of a cents value (re 10 Hz).
pub fn cents_to_hz(cents: f64) -> f64 {
    10.0 * (cents / 1200.0).exp2()
}

/// Cents (re 10 Hz) of a frequency in Hz.
pub fn hz_to_cents(hz: f64) -> f64 {
    1200.0 * (hz / 10.0).log2()
}

/// Frequency in Hz at the centre of a bin.
pub fn bin_to_hz(bin: usize) -> f64 {
    cents_to_hz(bin_to_cents(bin as f64))
}

/// Fractional bin of a frequency in Hz.
pub fn hz_to_bin(hz: f64) -> f64 {
    (hz_to_cents(hz) - CENTS_OFFSET) / CENTS_PER_BIN
}

/// Distance between two frequencies in cents (signed, `a` relative to `b`).
pub fn cents_between(a_hz: f64, b_hz: f64) -> f64 {
    1200.0 * (a_hz / b_hz).log2()
}

/// The half-open bin range `[lo, hi)` a decoder may pick from, given a
/// frequency range; `fmin` rounds down and `fmax` up, like torchcrepe.
pub fn bin_range(fmin: f32, fmax: f32, bins: usize) -> (usize, usize) {
    let lo = hz_to_bin(fmin as f64).floor().clamp(0.0, bins as f64) as usize;
    let hi = hz_to_bin(fmax as f64).ceil().clamp(0.0, bins as f64) as usize;
    (lo, hi.max(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_round_trip() {
        for b in [0usize, 1, 100, 359] {
            let hz = bin_to_hz(b);
            assert!((hz_to_bin(hz) - b as f64).abs() < 1e-9);
        }
        assert!((bin_to_hz(0) - 31.7).abs() < 0.1);
        assert!((bin_to_hz(359) - 2005.5).abs() < 0.5);
    }

    #[test]
    fn torchcrepe_default_range() {
        // torchcrepe: fmin 50 Hz -> bin 39 (floor), fmax 2006 Hz -> 360 (ceil).
        assert_eq!(bin_range(50.0, MAX_FMAX, 360), (39, 360));
    }
}
