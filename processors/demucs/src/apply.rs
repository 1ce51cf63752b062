//! Running a model (or a bag) over a whole track, as the reference's `separate.py` +
//! `apply.apply_model` do: normalise the track, then for each model and each random shift split
//! it into overlapping segments, run every segment (padded with its real surroundings to the
//! model's segment length), and blend them back with triangular weights. Only one segment is a
//! tensor at a time; the track and the stems live in plain `f32` vectors, so memory is the
//! output plus one segment however long the track is.

use candle_core::{DType, Device, Tensor};

use crate::{DemucsError, Result, SegmentModel};

/// How to run the separation; the defaults are the reference CLI's.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOptions {
    /// Number of random time shifts averaged (the "shift trick"); 0 runs the track unshifted.
    pub shifts: usize,
    /// Fraction of a segment shared with the next one, in `[0, 1)`.
    pub overlap: f64,
    /// Segment length in seconds; `None` uses each model's training segment. May not exceed it.
    pub segment: Option<f64>,
    /// Seed for the shift offsets, so a run can be repeated exactly.
    pub seed: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            shifts: 1,
            overlap: 0.25,
            segment: None,
            seed: 0,
        }
    }
}

/// Separate `mix` (`[channel][sample]`, at the models' rate and channel count) into
/// `[source][channel][sample]` of the same length. `weights[m][s]` is how much model `m`
/// contributes to source `s`; each source is divided by its total weight. `progress(done,
/// total)` is called before the first segment and after each one, counting segments over all
/// models and shifts; returning `false` stops with [`DemucsError::Canceled`].
pub fn separate(
    models: &[&dyn SegmentModel],
    weights: &[Vec<f32>],
    mix: &[Vec<f32>],
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let first = *models
        .first()
        .ok_or_else(|| invalid("no model to apply".into()))?;
    let sources = first.sources().len();
    let channels = first.audio_channels();
    let samplerate = first.samplerate();
    check_inputs(models, weights, mix, opts)?;
    let length = mix[0].len();

    // Whole-track normalisation as in separate.py: mono reference, its mean and (unbiased) std.
    // A silent or one-sample track has no usable std; dividing by 1 keeps it finite.
    let (mean, std) = mono_stats(mix);
    let source = Source { mix, mean, std };

    // Draw every shift offset up front (model by model, shift by shift, like the reference's
    // order) so the total number of segments is known before the first one runs.
    let max_shift = if opts.shifts > 0 {
        (0.5 * samplerate as f64) as usize
    } else {
        0
    };
    let mut rng = SplitMix64(opts.seed);
    let mut plans = Vec::new();
    for (m, model) in models.iter().enumerate() {
        let segment_len = segment_samples(*model, opts.segment);
        let stride = ((1.0 - opts.overlap) * segment_len as f64) as usize;
        if stride == 0 {
            return Err(invalid(format!(
                "overlap {} leaves no stride for a {segment_len}-sample segment",
                opts.overlap
            )));
        }
        let passes: Vec<Pass> = if opts.shifts == 0 {
            vec![Pass::new(0, 0, length, stride)]
        } else {
            (0..opts.shifts)
                .map(|_| {
                    let offset = rng.below_inclusive(max_shift as u64) as usize;
                    // The shifted view starts `offset` into the track padded by `max_shift`
                    // on both sides and runs to the end of the right padding's first half.
                    let start = offset as i64 - max_shift as i64;
                    Pass::new(
                        start,
                        max_shift - offset,
                        length + max_shift - offset,
                        stride,
                    )
                })
                .collect()
        };
        plans.push((m, segment_len, passes));
    }
    let total: usize = plans
        .iter()
        .flat_map(|(_, _, passes)| passes.iter().map(|p| p.offsets.len()))
        .sum();

    let mut totals = vec![0f32; sources];
    for w in weights {
        for (t, w) in totals.iter_mut().zip(w) {
            *t += w;
        }
    }
    if let Some(s) = totals.iter().position(|t| *t == 0.0) {
        return Err(invalid(format!(
            "the bag weights of source {s} sum to zero"
        )));
    }

    let mut out = vec![vec![vec![0f32; length]; channels]; sources];
    let mut done = 0;
    if !progress(done, total) {
        return Err(DemucsError::Canceled);
    }
    let n_passes = opts.shifts.max(1) as f32;
    for (m, segment_len, passes) in plans {
        let model = models[m];
        let window = triangle(segment_len);
        // The chunk fed to the model: the override length, or the model's training length.
        let target = segment_len;
        for pass in passes {
            let sum_weight = pass.sum_weight(&window, segment_len);
            for &offset in &pass.offsets {
                let chunk_len = segment_len.min(pass.len - offset);
                let delta = target - chunk_len;
                let start = pass.start + offset as i64 - (delta / 2) as i64;
                let input = source.read(start, target, channels);
                let input = Tensor::from_vec(input, (1, channels, target), &Device::Cpu)?;
                let output = model.forward(&input)?;
                let output = to_host(&output, sources, channels, target)?;
                // center_trim back to the chunk, weight it and add it in, already divided by
                // everything the reference divides by afterwards (sum of weights, shifts, bag
                // totals), so one output buffer serves all passes and models.
                let trim = delta / 2;
                for (s, stem) in out.iter_mut().enumerate() {
                    let gain = weights[m][s] / totals[s] / n_passes;
                    for (c, dst) in stem.iter_mut().enumerate() {
                        let row = &output[(s * channels + c) * target + trim..][..chunk_len];
                        for (k, y) in row.iter().enumerate() {
                            // Position in the pass, then in the track (passes run past it).
                            let i = offset + k;
                            let Some(j) = i.checked_sub(pass.skip) else {
                                continue;
                            };
                            if j >= length {
                                continue;
                            }
                            dst[j] += gain * window[k] * y / sum_weight[i];
                        }
                    }
                }
                done += 1;
                if !progress(done, total) {
                    return Err(DemucsError::Canceled);
                }
            }
        }
    }
    for stem in &mut out {
        for ch in stem {
            for y in ch.iter_mut() {
                *y = *y * std + mean;
            }
        }
    }
    Ok(out)
}

fn invalid(message: String) -> DemucsError {
    DemucsError::InvalidInput(message)
}

fn check_inputs(
    models: &[&dyn SegmentModel],
    weights: &[Vec<f32>],
    mix: &[Vec<f32>],
    opts: &ApplyOptions,
) -> Result<()> {
    let first = models[0];
    for model in models {
        if model.sources() != first.sources()
            || model.samplerate() != first.samplerate()
            || model.audio_channels() != first.audio_channels()
        {
            return Err(invalid(
                "the models of a bag must share sources, sample rate and channels".into(),
            ));
        }
    }
    if weights.len() != models.len() || weights.iter().any(|w| w.len() != first.sources().len()) {
        return Err(invalid(format!(
            "expected {} weight rows of {} sources",
            models.len(),
            first.sources().len()
        )));
    }
    if mix.len() != first.audio_channels() {
        return Err(invalid(format!(
            "the model takes {} channels, the mix has {}",
            first.audio_channels(),
            mix.len()
        )));
    }
    if mix[0].is_empty() || mix.iter().any(|c| c.len() != mix[0].len()) {
        return Err(invalid(
            "the mix is empty or its channels differ in length".into(),
        ));
    }
    if !(0.0..1.0).contains(&opts.overlap) {
        return Err(invalid(format!(
            "overlap must be in [0, 1), got {}",
            opts.overlap
        )));
    }
    if let Some(segment) = opts.segment {
        for model in models {
            let max = model.segment_samples() as f64 / model.samplerate() as f64;
            let len = segment_samples(*model, Some(segment));
            if segment.is_nan() || segment <= 0.0 || len == 0 || len > model.segment_samples() {
                return Err(invalid(format!(
                    "segment must be positive and at most the model's training segment ({max:.2} s), got {segment}"
                )));
            }
        }
    }
    Ok(())
}

/// `int(segment * samplerate)` like the reference. The epsilon keeps a decimal such as 7.8 s,
/// whose binary value falls a hair short, from losing a sample the reference's exact fraction
/// keeps.
fn segment_samples(model: &dyn SegmentModel, segment: Option<f64>) -> usize {
    match segment {
        None => model.segment_samples(),
        Some(s) => (s * model.samplerate() as f64 + 1e-6).floor().max(0.0) as usize,
    }
}

/// Mean and unbiased standard deviation of the channel average, as torch's `mean`/`std`.
fn mono_stats(mix: &[Vec<f32>]) -> (f32, f32) {
    let n = mix[0].len();
    let channels = mix.len() as f64;
    let mono = |i: usize| mix.iter().map(|c| c[i] as f64).sum::<f64>() / channels;
    let mean = (0..n).map(mono).sum::<f64>() / n as f64;
    let var = if n > 1 {
        (0..n).map(|i| (mono(i) - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let std = var.sqrt();
    let std = if std > 1e-12 && std.is_finite() {
        std
    } else {
        1.0
    };
    (mean as f32, std as f32)
}

/// The normalised track, read with zeros outside it (the shift padding and the context padding
/// of `TensorChunk.padded` both see zeros past the ends).
struct Source<'a> {
    mix: &'a [Vec<f32>],
    mean: f32,
    std: f32,
}

impl Source<'_> {
    fn read(&self, start: i64, len: usize, channels: usize) -> Vec<f32> {
        let total = self.mix[0].len() as i64;
        let mut out = vec![0f32; channels * len];
        let lo = start.clamp(0, total);
        let hi = (start + len as i64).clamp(0, total);
        for (c, ch) in self.mix.iter().enumerate() {
            let dst = &mut out[c * len..][..len];
            for i in lo..hi {
                dst[(i - start) as usize] = (ch[i as usize] - self.mean) / self.std;
            }
        }
        out
    }
}

/// One run of the split loop over a (possibly shifted) view of the track.
struct Pass {
    /// Where the view starts in the track (negative inside the left shift padding).
    start: i64,
    /// How many leading samples of the view's output precede the track (`max_shift - offset`).
    skip: usize,
    len: usize,
    offsets: Vec<usize>,
}

impl Pass {
    fn new(start: i64, skip: usize, len: usize, stride: usize) -> Self {
        let offsets = (0..len).step_by(stride).collect();
        Self {
            start,
            skip,
            len,
            offsets,
        }
    }

    /// Sum of the window weights covering each position of the view.
    fn sum_weight(&self, window: &[f32], segment_len: usize) -> Vec<f32> {
        let mut sum = vec![0f32; self.len];
        for &offset in &self.offsets {
            let n = segment_len.min(self.len - offset);
            for (s, w) in sum[offset..offset + n].iter_mut().zip(window) {
                *s += w;
            }
        }
        sum
    }
}

/// The reference's transition weight with `transition_power` 1: rising 1..n/2, falling back to
/// 1, normalised to a peak of 1.
fn triangle(n: usize) -> Vec<f32> {
    let half = n / 2;
    let rise = 1..=half;
    let fall = (1..=n - half).rev();
    let raw: Vec<f32> = rise.chain(fall).map(|v| v as f32).collect();
    let max = raw.iter().cloned().fold(0f32, f32::max);
    raw.into_iter().map(|v| v / max).collect()
}

fn to_host(output: &Tensor, sources: usize, channels: usize, len: usize) -> Result<Vec<f32>> {
    if output.dims() != [1, sources, channels, len] {
        return Err(invalid(format!(
            "the model returned shape {:?}, expected [1, {sources}, {channels}, {len}]",
            output.dims()
        )));
    }
    Ok(output
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// A small seeded generator for the shift offsets (the reference uses Python's `random`; the
/// offsets are random by design, so only their range and reproducibility matter).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (the modulo bias is negligible for offsets of a few thousand).
    fn below_inclusive(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
