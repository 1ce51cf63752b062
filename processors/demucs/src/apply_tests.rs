//! The apply loop checked with closed-form models: a per-source gain (its separation is known
//! exactly, whatever the chunking) and a "position" model that outputs each sample's index in
//! the chunk it was given (which exposes the padding, trimming and blending).

use std::sync::Mutex;

use candle_core::{Device, Tensor};

use super::*;

struct Toy {
    sources: Vec<String>,
    gains: Vec<f32>,
    samplerate: u32,
    segment: usize,
    /// Output the position in the chunk instead of a gain of the input.
    position: bool,
    seen: Mutex<Vec<usize>>,
}

impl Toy {
    fn gains(gains: &[f32], samplerate: u32, segment: usize) -> Self {
        Self {
            sources: (0..gains.len()).map(|s| format!("s{s}")).collect(),
            gains: gains.to_vec(),
            samplerate,
            segment,
            position: false,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn position(samplerate: u32, segment: usize) -> Self {
        Self {
            position: true,
            ..Self::gains(&[1.0], samplerate, segment)
        }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl SegmentModel for Toy {
    fn sources(&self) -> &[String] {
        &self.sources
    }
    fn audio_channels(&self) -> usize {
        2
    }
    fn samplerate(&self) -> u32 {
        self.samplerate
    }
    fn segment_samples(&self) -> usize {
        self.segment
    }
    fn forward(&self, mix: &Tensor) -> Result<Tensor> {
        let (b, c, l) = mix.dims3()?;
        self.seen.lock().unwrap().push(l);
        assert!(l <= self.segment, "chunk longer than the segment");
        let s = self.sources.len();
        if self.position {
            let pos: Vec<f32> = (0..b * s * c)
                .flat_map(|_| (0..l).map(|k| k as f32))
                .collect();
            return Ok(Tensor::from_vec(pos, (b, s, c, l), &Device::Cpu)?);
        }
        let parts: Vec<Tensor> = self
            .gains
            .iter()
            .map(|g| (mix * (*g as f64))?.unsqueeze(1))
            .collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }
}

fn mix(len: usize) -> Vec<Vec<f32>> {
    let left = (0..len)
        .map(|i| ((i * 7 % 13) as f32 - 5.0) * 0.1)
        .collect();
    let right = (0..len)
        .map(|i| ((i * 5 % 11) as f32 - 3.0) * 0.07)
        .collect();
    vec![left, right]
}

/// Mean and unbiased std of the channel average, computed the plain way.
fn stats(mix: &[Vec<f32>]) -> (f64, f64) {
    let mono: Vec<f64> = (0..mix[0].len())
        .map(|i| (mix[0][i] as f64 + mix[1][i] as f64) / 2.0)
        .collect();
    let mean = mono.iter().sum::<f64>() / mono.len() as f64;
    let var = mono.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (mono.len() - 1) as f64;
    (mean, var.sqrt())
}

fn run(
    models: &[&dyn SegmentModel],
    weights: &[Vec<f32>],
    mix: &[Vec<f32>],
    opts: &ApplyOptions,
) -> Result<Vec<Vec<Vec<f32>>>> {
    separate(models, weights, mix, opts, &mut |_, _| true)
}

fn opts(shifts: usize, overlap: f64) -> ApplyOptions {
    ApplyOptions {
        shifts,
        overlap,
        ..ApplyOptions::default()
    }
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    let want: Vec<f32> = want.iter().map(|w| *w as f32).collect();
    roar_testkit::assert_close(what, got, &want, 1e-4);
}

/// A gain separator's stems are exactly `g * (x - mean) + mean` however the track is cut up:
/// the blended segments must add back to the input.
#[test]
fn overlap_add_reconstructs_gains_with_and_without_shifts() {
    let model = Toy::gains(&[1.0, 0.5, -2.0], 8, 16);
    let x = mix(101);
    let (mean, _) = stats(&x);
    for (shifts, overlap) in [(0, 0.25), (0, 0.5), (1, 0.25), (3, 0.1)] {
        let out = run(&[&model], &[vec![1.0; 3]], &x, &opts(shifts, overlap)).unwrap();
        assert_eq!(out.len(), 3);
        for (s, g) in model.gains.iter().enumerate() {
            for c in 0..2 {
                let want: Vec<f64> = x[c]
                    .iter()
                    .map(|v| *g as f64 * (*v as f64 - mean) + mean)
                    .collect();
                assert_close(&out[s][c], &want, &format!("shifts {shifts} source {s}"));
            }
        }
    }
}

/// Hand-worked blend: segment 4, overlap 0.5 (stride 2), six samples. The last chunk is two
/// samples, padded to four with its real left neighbour and a zero, and trimmed back to the
/// middle two. Window [.5, 1, 1, .5].
#[test]
fn triangular_blend_matches_hand_computation() {
    let model = Toy::position(4, 4);
    let x = mix(6);
    let (mean, std) = stats(&x);
    let out = run(&[&model], &[vec![1.0]], &x, &opts(0, 0.5)).unwrap();
    let blended = [0.0, 1.0, 4.0 / 3.0, 5.0 / 3.0, 5.0 / 3.0, 7.0 / 3.0];
    let want: Vec<f64> = blended.iter().map(|y| y * std + mean).collect();
    assert_close(&out[0][0], &want, "left");
    assert_close(&out[0][1], &want, "right");
    assert_eq!(*model.seen.lock().unwrap(), vec![4, 4, 4]);
}

/// Shorter than one segment: a single chunk centred in the segment (delta 5: two samples of
/// padding on the left), trimmed back from position 2.
#[test]
fn short_input_is_centred_in_one_segment() {
    let model = Toy::position(4, 8);
    let x = mix(3);
    let (mean, std) = stats(&x);
    let out = run(&[&model], &[vec![1.0]], &x, &opts(0, 0.25)).unwrap();
    let want: Vec<f64> = [2.0, 3.0, 4.0].iter().map(|y| y * std + mean).collect();
    assert_close(&out[0][1], &want, "short");
    assert_eq!(model.calls(), 1);

    let gains = Toy::gains(&[0.25], 44_100, 1000);
    let out = run(&[&gains], &[vec![1.0]], &x, &ApplyOptions::default()).unwrap();
    let (mean, _) = stats(&x);
    let want: Vec<f64> = x[0]
        .iter()
        .map(|v| 0.25 * (*v as f64 - mean) + mean)
        .collect();
    assert_close(&out[0][0], &want, "short with a shift");
}

/// One shift is the unshifted separation of the track delayed by `max_shift - offset` zeros,
/// for some offset in `0..=max_shift`; several shifts average such separations.
#[test]
fn shifts_average_delayed_separations() {
    let (sr, seg, len) = (8, 6, 23);
    let max_shift = 4;
    let x = mix(len);
    let (mean, std) = stats(&x);
    // Unshifted output (before denormalising) of the track with `p` zeros in front.
    let delayed = |p: usize| -> Vec<f64> {
        let model = Toy::position(sr, seg);
        let padded: Vec<Vec<f32>> = x
            .iter()
            .map(|c| {
                std::iter::repeat_n(0.0, p)
                    .chain(c.iter().cloned())
                    .collect()
            })
            .collect();
        let (m, s) = stats(&padded);
        let out = run(&[&model], &[vec![1.0]], &padded, &opts(0, 0.25)).unwrap();
        out[0][0][p..].iter().map(|y| (*y as f64 - m) / s).collect()
    };
    let candidates: Vec<Vec<f64>> = (0..=max_shift).map(delayed).collect();
    for shifts in [1, 2] {
        let model = Toy::position(sr, seg);
        let out = run(&[&model], &[vec![1.0]], &x, &opts(shifts, 0.25)).unwrap();
        let got: Vec<f64> = out[0][0].iter().map(|y| (*y as f64 - mean) / std).collect();
        let combos: Vec<Vec<usize>> = if shifts == 1 {
            (0..=max_shift).map(|p| vec![p]).collect()
        } else {
            (0..=max_shift)
                .flat_map(|a| (0..=max_shift).map(move |b| vec![a, b]))
                .collect()
        };
        let matched = combos.iter().any(|ps| {
            (0..len).all(|j| {
                let avg = ps.iter().map(|p| candidates[*p][j]).sum::<f64>() / ps.len() as f64;
                (avg - got[j]).abs() < 1e-4
            })
        });
        assert!(
            matched,
            "{shifts} shifts: no average of delayed runs matches"
        );
    }
    // The offsets come from the seed: the same seed repeats the run exactly.
    let a = Toy::position(sr, seg);
    let b = Toy::position(sr, seg);
    let o = opts(2, 0.25);
    assert_eq!(
        run(&[&a], &[vec![1.0]], &x, &o).unwrap(),
        run(&[&b], &[vec![1.0]], &x, &o).unwrap()
    );
}

/// Each source is the weighted mean of the bag members' estimates for it.
#[test]
fn bag_weights_are_normalised_per_source() {
    let a = Toy::gains(&[1.0, 2.0], 8, 16);
    let b = Toy::gains(&[3.0, -1.0], 8, 16);
    let x = mix(40);
    let (mean, _) = stats(&x);
    let weights = [vec![1.0, 0.0], vec![1.0, 3.0]];
    let out = run(&[&a, &b], &weights, &x, &opts(1, 0.25)).unwrap();
    for (s, g) in [(0usize, 2.0f64), (1, -1.0)] {
        let want: Vec<f64> = x[0].iter().map(|v| g * (*v as f64 - mean) + mean).collect();
        assert_close(&out[s][0], &want, &format!("source {s}"));
    }
    let err = run(
        &[&a, &b],
        &[vec![1.0, 0.0], vec![1.0, 0.0]],
        &x,
        &opts(1, 0.25),
    );
    assert!(matches!(err, Err(DemucsError::InvalidInput(_))));
}

/// Progress counts every segment of every model and shift; stopping returns Canceled and no
/// further segment runs.
#[test]
fn progress_counts_segments_and_cancel_stops() {
    let a = Toy::gains(&[1.0], 4, 4);
    let b = Toy::gains(&[1.0], 4, 4);
    let x = mix(10); // segment 4, stride 3: offsets 0, 3, 6, 9
    let mut calls = Vec::new();
    separate(
        &[&a, &b],
        &[vec![1.0], vec![1.0]],
        &x,
        &opts(0, 0.25),
        &mut |d, t| {
            calls.push((d, t));
            true
        },
    )
    .unwrap();
    assert_eq!(calls, (0..=8).map(|d| (d, 8)).collect::<Vec<_>>());

    // With shifts the view length depends on the offset, but the total is known up front.
    let c = Toy::gains(&[1.0], 4, 4);
    let mut seen = Vec::new();
    separate(&[&c], &[vec![1.0]], &x, &opts(3, 0.25), &mut |d, t| {
        seen.push((d, t));
        true
    })
    .unwrap();
    let total = seen[0].1;
    assert_eq!(total, c.calls());
    assert_eq!(seen.last(), Some(&(total, total)));

    let d = Toy::gains(&[1.0], 4, 4);
    let err = separate(&[&d], &[vec![1.0]], &x, &opts(0, 0.25), &mut |done, _| {
        done < 2
    });
    assert!(matches!(err, Err(DemucsError::Canceled)));
    assert_eq!(d.calls(), 2);
}

/// A segment override cuts and pads chunks to its own length, and may not exceed the model's.
#[test]
fn segment_override_sets_chunk_length() {
    let model = Toy::gains(&[1.0], 4, 8);
    let x = mix(20);
    let o = ApplyOptions {
        shifts: 0,
        segment: Some(1.0),
        ..ApplyOptions::default()
    };
    let out = run(&[&model], &[vec![1.0]], &x, &o).unwrap();
    let seen = model.seen.lock().unwrap().clone();
    // 4 samples, stride 3: offsets 0..=18 step 3 = 7 chunks, all padded to 4.
    assert_eq!(seen, vec![4; 7]);
    let (mean, _) = stats(&x);
    let want: Vec<f64> = x[1].iter().map(|v| *v as f64 - mean + mean).collect();
    assert_close(&out[0][1], &want, "override");

    for bad in [3.0, 0.0, -1.0, f64::NAN] {
        let o = ApplyOptions {
            segment: Some(bad),
            ..ApplyOptions::default()
        };
        let err = run(&[&model], &[vec![1.0]], &x, &o);
        assert!(matches!(err, Err(DemucsError::InvalidInput(_))), "{bad}");
    }
}

#[test]
fn bad_inputs_are_rejected() {
    let model = Toy::gains(&[1.0], 4, 8);
    let cases: Vec<(Vec<Vec<f32>>, ApplyOptions)> = vec![
        (vec![vec![0.0; 10]], ApplyOptions::default()),
        (vec![vec![], vec![]], ApplyOptions::default()),
        (vec![vec![0.0; 10], vec![0.0; 9]], ApplyOptions::default()),
        (mix(10), opts(1, 1.0)),
        (mix(10), opts(1, -0.1)),
    ];
    for (x, o) in cases {
        let err = run(&[&model], &[vec![1.0]], &x, &o);
        assert!(matches!(err, Err(DemucsError::InvalidInput(_))), "{o:?}");
    }
    let err = run(&[&model], &[vec![1.0, 1.0]], &mix(10), &opts(1, 0.25));
    assert!(matches!(err, Err(DemucsError::InvalidInput(_))));
    // Silence has no std; it must come back as silence, not NaN.
    let out = run(
        &[&model],
        &[vec![1.0]],
        &[vec![0.0; 10], vec![0.0; 10]],
        &opts(1, 0.25),
    );
    let out = out.unwrap();
    assert_eq!((out.len(), out[0].len(), out[0][0].len()), (1, 2, 10));
    assert!(out[0].iter().flatten().all(|v| *v == 0.0));
}
