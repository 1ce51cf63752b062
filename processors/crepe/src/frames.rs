//! Cutting 16 kHz audio into normalised 1024-sample frames.
//!
//! Same as torchcrepe's `preprocess`: with `pad`, the signal gets 512 zeros
//! on each side so that frame `i` is centred on sample `i * hop`, giving
//! `1 + len / hop` frames; without it, frames start at sample `i * hop` and
//! only whole frames are kept. Each frame is then mean-centred and divided
//! by its (unbiased, n - 1) standard deviation, floored at 1e-10.

use crate::model::WINDOW_SIZE;

/// Number of frames [`frame`] produces for `len` samples.
pub fn frame_count(len: usize, hop: usize, pad: bool) -> usize {
    assert!(hop > 0, "hop must be positive");
    if pad {
        1 + len / hop
    } else if len < WINDOW_SIZE {
        0
    } else {
        1 + (len - WINDOW_SIZE) / hop
    }
}

/// Writes normalised frames `first..first + count` of `samples` into `out`
/// (row-major, `count x 1024`), padding as described in the module docs.
pub fn frame_range(
    samples: &[f32],
    hop: usize,
    pad: bool,
    first: usize,
    count: usize,
    out: &mut Vec<f32>,
) {
    let offset = if pad { WINDOW_SIZE as isize / 2 } else { 0 };
    out.clear();
    out.reserve(count * WINDOW_SIZE);
    for f in first..first + count {
        let start = (f * hop) as isize - offset;
        let row = out.len();
        out.extend((0..WINDOW_SIZE as isize).map(|k| {
            let i = start + k;
            if i >= 0 && (i as usize) < samples.len() {
                samples[i as usize]
            } else {
                0.0
            }
        }));
        normalise(&mut out[row..]);
    }
}

/// All normalised frames of `samples`.
pub fn frame(samples: &[f32], hop: usize, pad: bool) -> Vec<f32> {
    let mut out = Vec::new();
    frame_range(
        samples,
        hop,
        pad,
        0,
        frame_count(samples.len(), hop, pad),
        &mut out,
    );
    out
}

/// Mean-centres a frame and scales it to unit (unbiased) standard deviation.
pub fn normalise(frame: &mut [f32]) {
    let n = frame.len();
    if n == 0 {
        return;
    }
    let mean = frame.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let mut ss = 0.0f64;
    for x in frame.iter_mut() {
        let c = (*x as f64 - mean) as f32;
        *x = c;
        ss += (c as f64) * (c as f64);
    }
    let std = if n > 1 {
        (ss / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let std = (std as f32).max(1e-10);
    for x in frame.iter_mut() {
        *x /= std;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_torchcrepe() {
        assert_eq!(frame_count(16000, 160, true), 101);
        assert_eq!(frame_count(0, 160, true), 1);
        assert_eq!(frame_count(1023, 160, false), 0);
        assert_eq!(frame_count(1024 + 320, 160, false), 3);
    }

    #[test]
    fn frames_are_centred_and_normalised() {
        let x: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.05).sin() + 0.3).collect();
        let frames = frame(&x, 160, true);
        assert_eq!(frames.len(), frame_count(4000, 160, true) * WINDOW_SIZE);
        for f in frames.chunks_exact(WINDOW_SIZE) {
            let mean: f32 = f.iter().sum::<f32>() / 1024.0;
            let var: f32 = f.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 1023.0;
            assert!(mean.abs() < 1e-4);
            assert!((var - 1.0).abs() < 1e-3);
        }
        // Silence stays zero rather than blowing up.
        let silent = frame(&[0.0; 2000], 160, true);
        assert!(silent.iter().all(|&v| v == 0.0));
    }
}
