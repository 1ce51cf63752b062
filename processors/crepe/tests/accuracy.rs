//! Pitch accuracy of the tiny model on synthetic audio made here: steady
//! sines, vibrato, a glide, silence and white noise.

mod common;

use std::f64::consts::PI;

use roar_crepe::convert::cents_between;
use roar_crepe::{Capacity, Crepe, Decoder, PitchTrack, TrackOptions, SAMPLE_RATE};

const SR: f64 = SAMPLE_RATE as f64;

/// A tone following `f0(t)`, with its phase integrated sample by sample.
fn tone(seconds: f64, f0: impl Fn(f64) -> f64) -> Vec<f32> {
    let n = (seconds * SR) as usize;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let s = 0.5 * phase.sin();
            phase = (phase + 2.0 * PI * f0(i as f64 / SR) / SR) % (2.0 * PI);
            s as f32
        })
        .collect()
}

fn vibrato(t: f64) -> f64 {
    // 330 Hz, +-60 cents at 5.5 Hz.
    330.0 * (60.0 / 1200.0 * (2.0 * PI * 5.5 * t).sin()).exp2()
}

fn glide(t: f64) -> f64 {
    // 150 -> 600 Hz, exponential, over 2 s.
    150.0 * 4f64.powf(t / 2.0)
}

/// Deterministic white noise in [-0.5, 0.5) (xorshift).
fn noise(seconds: f64) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..(seconds * SR) as usize)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

const DECODERS: [Decoder; 4] = [
    Decoder::Argmax,
    Decoder::WeightedArgmax,
    Decoder::Viterbi,
    Decoder::NormalizedViterbi,
];

/// Runs the network once and decodes the result with every decoder.
fn run(crepe: &Crepe, audio: &[f32]) -> Vec<(Decoder, PitchTrack)> {
    let opts = TrackOptions::default();
    let acts = crepe
        .track_activations(audio, &opts, &mut |_| true)
        .unwrap();
    DECODERS
        .into_iter()
        .map(|decoder| {
            let opts = TrackOptions {
                decoder,
                ..opts.clone()
            };
            (decoder, PitchTrack::from_activations(&acts, &opts).unwrap())
        })
        .collect()
}

/// (share of frames within 50 cents, share flagged voiced) over the frames
/// whose analysis window lies inside the tone.
fn score(track: &PitchTrack, truth: &dyn Fn(f64) -> f64, seconds: f64) -> (f64, f64) {
    let half_window = 512.0 / SR;
    let frames: Vec<usize> = (0..track.len())
        .filter(|&i| track.times[i] >= half_window && track.times[i] + half_window <= seconds)
        .collect();
    let close = frames
        .iter()
        .filter(|&&i| cents_between(track.f0_hz[i] as f64, truth(track.times[i])).abs() <= 50.0)
        .count();
    let voiced = frames.iter().filter(|&&i| track.voiced[i]).count();
    // With no frame inside the tone the shares would be 0/0 = NaN, which passes `< 0.95`.
    assert!(
        !frames.is_empty(),
        "no frame inside {seconds} s of {} frames",
        track.len()
    );
    let n = frames.len() as f64;
    (close as f64 / n, voiced as f64 / n)
}

fn unvoiced_share(track: &PitchTrack) -> f64 {
    assert!(!track.is_empty(), "no frames");
    track.voiced.iter().filter(|&&v| !v).count() as f64 / track.len() as f64
}

type Case = (&'static str, f64, Box<dyn Fn(f64) -> f64>);

fn tones() -> Vec<Case> {
    let mut cases: Vec<Case> = [82.41, 110.0, 220.0, 440.0, 880.0, 1318.5]
        .into_iter()
        .map(|f| ("sine", 1.0, Box::new(move |_| f) as Box<dyn Fn(f64) -> f64>))
        .collect();
    cases.push(("vibrato", 1.5, Box::new(vibrato)));
    cases.push(("glide", 2.0, Box::new(glide)));
    cases
}

#[test]
fn tiny_tracks_tones_within_50_cents() {
    let crepe = common::load(Capacity::Tiny);
    let mut failures = Vec::new();
    let mut scored = 0;
    for (name, seconds, f0) in tones() {
        for (decoder, track) in run(&crepe, &tone(seconds, &f0)) {
            scored += 1;
            let (close, voiced) = score(&track, &f0, seconds);
            println!(
                "{decoder:?} {name} {:.1} Hz: {:.1}% within 50 cents, {:.1}% voiced",
                f0(0.0),
                close * 100.0,
                voiced * 100.0
            );
            if close < 0.95 || voiced < 0.95 {
                failures.push(format!("{decoder:?} {name} {:.1} Hz", f0(0.0)));
            }
        }
    }
    assert_eq!(scored, tones().len() * DECODERS.len(), "tracks scored");
    assert!(failures.is_empty(), "below 95%: {failures:?}");
}

#[test]
fn tiny_calls_silence_and_noise_unvoiced() {
    let crepe = common::load(Capacity::Tiny);
    let silent = run(&crepe, &vec![0.0; SAMPLE_RATE as usize]);
    let noisy = run(&crepe, &noise(1.0));
    for ((decoder, s), (_, n)) in silent.iter().zip(&noisy) {
        let (s, n) = (unvoiced_share(s), unvoiced_share(n));
        println!(
            "{decoder:?} unvoiced: silence {:.1}%, noise {:.1}%",
            s * 100.0,
            n * 100.0
        );
        assert!(s >= 0.99, "{decoder:?}: silence only {s:.3} unvoiced");
        // Single noise frames can look periodic to the network; most must not.
        assert!(n >= 0.75, "{decoder:?}: noise only {n:.3} unvoiced");
    }
}

#[test]
fn tiny_tracks_short_notes_between_silences() {
    let crepe = common::load(Capacity::Tiny);
    // 0.4 s silence, 0.3 s A4, 0.3 s silence, 0.3 s C4, 0.4 s silence.
    let gap = |s: f64| vec![0.0f32; (s * SR) as usize];
    let notes = [(0.4, 440.0), (1.0, 261.63)];
    let mut audio = gap(0.4);
    audio.extend(tone(0.3, |_| 440.0));
    audio.extend(gap(0.3));
    audio.extend(tone(0.3, |_| 261.63));
    audio.extend(gap(0.4));
    let half_window = 512.0 / SR;
    for (decoder, track) in run(&crepe, &audio) {
        let (mut inside, mut good, mut voiced_outside, mut outside) = (0, 0, 0, 0);
        for i in 0..track.len() {
            let t = track.times[i];
            let note = notes
                .iter()
                .find(|(start, _)| t - half_window >= *start && t + half_window <= start + 0.3);
            let near = notes
                .iter()
                .any(|(start, _)| t + half_window > *start && t - half_window < start + 0.3);
            if let Some((_, hz)) = note {
                inside += 1;
                let cents = cents_between(track.f0_hz[i] as f64, *hz).abs();
                good += (track.voiced[i] && cents <= 50.0) as usize;
            } else if !near {
                outside += 1;
                voiced_outside += track.voiced[i] as usize;
            }
        }
        // Both notes and all three silences must have been scored.
        assert!(
            inside > 0 && outside > 0,
            "{decoder:?}: {inside} note frames, {outside} silent"
        );
        let share = good as f64 / inside as f64;
        println!(
            "{decoder:?}: {:.1}% of note frames voiced and within 50 cents; \
             {voiced_outside}/{outside} silent frames voiced",
            share * 100.0
        );
        assert_eq!(voiced_outside, 0, "{decoder:?}: silence voiced");
        if decoder == Decoder::Viterbi {
            // torchcrepe's own Viterbi loses notes this short (see Decoder docs).
            continue;
        }
        assert!(
            share >= 0.95,
            "{decoder:?}: only {share:.3} of note frames right"
        );
    }
}
