//! Short-time magnitude spectra with a Hann window, for the key and tempo
//! analyses.

use realfft::RealFftPlanner;

/// Calls `each(frame_index, magnitudes)` for `samples` cut into
/// `size`-sample frames every `hop` samples (frame `f` starts at sample
/// `f * hop - front_pad`; samples outside the signal are zeros), one spectrum of `size / 2 + 1` bins at a
/// time so that long signals need no more memory than one frame. Non-finite
/// samples count as zero.
pub(crate) fn for_each_spectrum(
    samples: &[f32],
    size: usize,
    hop: usize,
    front_pad: usize,
    mut each: impl FnMut(usize, &[f32]),
) {
    if samples.is_empty() || size < 2 || hop == 0 {
        return;
    }
    let window = hann(size);
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(size);
    let mut input = fft.make_input_vec();
    let mut output = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut mag = vec![0.0f32; output.len()];
    for f in 0..(samples.len() + front_pad).div_ceil(hop) {
        let start = f * hop;
        for (i, x) in input.iter_mut().enumerate() {
            let s = (start + i)
                .checked_sub(front_pad)
                .and_then(|j| samples.get(j))
                .copied()
                .unwrap_or(0.0);
            *x = if s.is_finite() { s * window[i] } else { 0.0 };
        }
        // Lengths come from the planner itself, so this cannot fail.
        if fft
            .process_with_scratch(&mut input, &mut output, &mut scratch)
            .is_err()
        {
            return;
        }
        for (m, c) in mag.iter_mut().zip(&output) {
            *m = c.norm();
        }
        each(f, &mag);
    }
}

/// Periodic Hann window (sums to a constant under 50 % overlap).
pub(crate) fn hann(size: usize) -> Vec<f32> {
    (0..size)
        .map(|i| {
            let x = std::f64::consts::PI * i as f64 / size as f64;
            (x.sin() * x.sin()) as f32
        })
        .collect()
}

/// Root-mean-square level of `samples` in dBFS (`floor` for silence).
pub(crate) fn rms_db(samples: &[f32], floor: f32) -> f32 {
    if samples.is_empty() {
        return floor;
    }
    let ms = samples
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        / samples.len() as f64;
    if ms <= 0.0 {
        return floor;
    }
    ((10.0 * ms.log10()) as f32).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_peaks_at_its_bin() {
        let sr = 16_000.0;
        let size = 1024;
        // Bin 64 of a 1024-point FFT at 16 kHz is 1000 Hz.
        let x: Vec<f32> = (0..4096)
            .map(|i| (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / sr).sin() as f32)
            .collect();
        let mut spec = Vec::new();
        for_each_spectrum(&x, size, 512, 0, |_, m| spec.push(m.to_vec()));
        assert_eq!(spec.len(), 8);
        let peak = spec[2]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(peak, 64);
    }

    #[test]
    fn empty_and_degenerate_input() {
        let mut calls = 0;
        for_each_spectrum(&[], 1024, 512, 0, |_, _| calls += 1);
        for_each_spectrum(&[1.0], 1024, 0, 0, |_, _| calls += 1);
        assert_eq!(calls, 0);
        assert_eq!(rms_db(&[], -100.0), -100.0);
        assert_eq!(rms_db(&[0.0; 10], -100.0), -100.0);
        assert!((rms_db(&[1.0, -1.0], -100.0)).abs() < 1e-6);
    }
}
