//! A band-limited resampler (Kaiser-windowed sinc) from any rate to any rate.
//!
//! CREPE wants 16 kHz. torchcrepe uses resampy's `kaiser_best` filter; this is
//! the same kind of filter (a windowed sinc, evaluated from a finely sampled
//! table with linear interpolation), with 32 zero crossings and Kaiser
//! beta 12 (about 115 dB stop-band attenuation). When going down in rate, the
//! cut-off is lowered to the new Nyquist frequency times a small roll-off.

use crate::error::{CrepeError, Result};

/// The rate CREPE runs at.
pub const SAMPLE_RATE: u32 = 16_000;

const ZERO_CROSSINGS: usize = 32;
const TABLE_RES: usize = 512;
const KAISER_BETA: f64 = 12.0;
const ROLLOFF: f64 = 0.945;

/// Resamples `input` from `from_hz` to 16 kHz.
pub fn to_16k(input: &[f32], from_hz: u32) -> Result<Vec<f32>> {
    resample(input, from_hz, SAMPLE_RATE)
}

/// Resamples `input` from `from_hz` to `to_hz`. Output length is
/// `ceil(len * to / from)`; equal rates return a copy.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(CrepeError::InvalidInput(format!(
            "sample rates must be positive (got {from_hz} -> {to_hz})"
        )));
    }
    if from_hz == to_hz {
        return Ok(input.to_vec());
    }
    let ratio = to_hz as f64 / from_hz as f64;
    let out_len = (input.len() as f64 * ratio).ceil() as usize;
    let table = filter_table();
    // Cut-off as a fraction of the input Nyquist frequency.
    let cut = ratio.min(1.0) * ROLLOFF;
    // Half-length of the filter, in input samples.
    let half = ZERO_CROSSINGS as f64 / cut;
    let step = cut * TABLE_RES as f64;
    let last = input.len() as isize - 1;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let x = n as f64 * from_hz as f64 / to_hz as f64;
        let lo = ((x - half).ceil() as isize).max(0);
        let hi = ((x + half).floor() as isize).min(last);
        let mut acc = 0.0f64;
        for k in lo..=hi {
            let pos = (x - k as f64).abs() * step;
            let i = pos as usize;
            if i + 1 >= table.len() {
                continue;
            }
            let frac = pos - i as f64;
            let h = table[i] + (table[i + 1] - table[i]) * frac;
            acc += h * input[k as usize] as f64;
        }
        out.push((acc * cut) as f32);
    }
    Ok(out)
}

/// `sinc(t) * kaiser(t / ZERO_CROSSINGS)` sampled at `t = k / TABLE_RES`.
fn filter_table() -> Vec<f64> {
    let len = ZERO_CROSSINGS * TABLE_RES + 2;
    let norm = bessel_i0(KAISER_BETA);
    (0..len)
        .map(|k| {
            let t = k as f64 / TABLE_RES as f64;
            let r = t / ZERO_CROSSINGS as f64;
            if r >= 1.0 {
                return 0.0;
            }
            let sinc = if k == 0 {
                1.0
            } else {
                let a = std::f64::consts::PI * t;
                a.sin() / a
            };
            sinc * bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / norm
        })
        .collect()
}

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for k in 1..200 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, rate: u32, len: usize) -> Vec<f32> {
        let w = 2.0 * std::f64::consts::PI * hz / rate as f64;
        (0..len).map(|i| (w * i as f64).sin() as f32).collect()
    }

    /// The middle 80 % of `got` within `bound` of `want` (the edges ring).
    fn assert_close_mid(what: &str, got: &[f32], want: &[f32], bound: f32) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let mid = got.len() / 10..got.len() - got.len() / 10;
        roar_testkit::assert_close(what, &got[mid.clone()], &want[mid], bound);
    }

    #[test]
    fn downsample_keeps_in_band_sine() {
        let x = sine(440.0, 44_100, 44_100);
        let y = to_16k(&x, 44_100).unwrap();
        assert_eq!(y.len(), 16_000);
        assert_close_mid("440 Hz", &y, &sine(440.0, 16_000, 16_000), 1e-3);
    }

    #[test]
    fn upsample_keeps_sine_and_removes_alias() {
        let y = to_16k(&sine(1000.0, 8_000, 8_000), 8_000).unwrap();
        assert_eq!(y.len(), 16_000);
        assert_close_mid("1 kHz", &y, &sine(1000.0, 16_000, 16_000), 1e-3);
        // A tone above the new Nyquist frequency is filtered away.
        let z = to_16k(&sine(15_000.0, 48_000, 48_000), 48_000).unwrap();
        assert_close_mid("alias", &z, &vec![0.0; z.len()], 1e-3);
    }

    #[test]
    fn rejects_zero_rate() {
        assert!(resample(&[0.0], 0, 16_000).is_err());
        assert_eq!(
            resample(&[1.0, 2.0], 16_000, 16_000).unwrap(),
            vec![1.0, 2.0]
        );
    }
}
