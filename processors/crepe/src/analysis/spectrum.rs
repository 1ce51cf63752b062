//! Short-time magnitude spectra with a Hann window, for the key and tempo
//! analyses.

use realfft::RealFftPlanner;

/// Magnitude spectra of `samples` cut into `size`-sample frames every `hop`
/// samples (frames start at 0; the last partial frame is zero-padded). Each
/// spectrum has `size / 2 + 1` bins. Non-finite samples count as zero.
pub(crate) fn stft_magnitudes(samples: &[f32], size: usize, hop: usize) -> Vec<Vec<f32>> {
    if samples.is_empty() || size < 2 || hop == 0 {
        return Vec::new();
    }
    let frames = samples.len().div_ceil(hop);
    let window = hann(size);
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(size);
    let mut input = fft.make_input_vec();
    let mut output = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut out = Vec::with_capacity(frames);
    for f in 0..frames {
        let start = f * hop;
        for (i, x) in input.iter_mut().enumerate() {
            let s = samples.get(start + i).copied().unwrap_or(0.0);
            *x = if s.is_finite() { s * window[i] } else { 0.0 };
        }
        // Lengths come from the planner itself, so this cannot fail.
        if fft
            .process_with_scratch(&mut input, &mut output, &mut scratch)
            .is_err()
        {
            return Vec::new();
        }
        out.push(output.iter().map(|c| c.norm()).collect());
    }
    out
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
        let spec = stft_magnitudes(&x, size, 512);
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
        assert!(stft_magnitudes(&[], 1024, 512).is_empty());
        assert!(stft_magnitudes(&[1.0], 1024, 0).is_empty());
        assert_eq!(rms_db(&[], -100.0), -100.0);
        assert_eq!(rms_db(&[0.0; 10], -100.0), -100.0);
        assert!((rms_db(&[1.0, -1.0], -100.0)).abs() < 1e-6);
    }
}
