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

fn run(crepe: &Crepe, audio: &[f32], decoder: Decoder) -> PitchTrack {
    let opts = TrackOptions {
        decoder,
        ..TrackOptions::default()
    };
    crepe.track(audio, &opts, &mut |_| true).unwrap()
}

/// (share of frames within 50 cents, share flagged voiced) over the frames
/// whose analysis window lies inside the tone.
fn score(track: &PitchTrack, truth: impl Fn(f64) -> f64, seconds: f64) -> (f64, f64) {
    let half_window = 512.0 / SR;
    let frames: Vec<usize> = (0..track.len())
        .filter(|&i| track.times[i] >= half_window && track.times[i] + half_window <= seconds)
        .collect();
    let close = frames
        .iter()
        .filter(|&&i| cents_between(track.f0_hz[i] as f64, truth(track.times[i])).abs() <= 50.0)
        .count();
    let voiced = frames.iter().filter(|&&i| track.voiced[i]).count();
    let n = frames.len() as f64;
    (close as f64 / n, voiced as f64 / n)
}

fn unvoiced_share(track: &PitchTrack) -> f64 {
    track.voiced.iter().filter(|&&v| !v).count() as f64 / track.len() as f64
}

fn check_decoder(crepe: &Crepe, decoder: Decoder) {
    type Case = (&'static str, f64, Box<dyn Fn(f64) -> f64>);
    let mut cases: Vec<Case> = [82.41, 110.0, 220.0, 440.0, 880.0, 1318.5]
        .into_iter()
        .map(|f| ("sine", 1.0, Box::new(move |_| f) as Box<dyn Fn(f64) -> f64>))
        .collect();
    cases.push(("vibrato", 1.5, Box::new(vibrato)));
    cases.push(("glide", 2.0, Box::new(glide)));
    let (mut close_all, mut voiced_all) = (0.0, 0.0);
    for (name, seconds, f0) in &cases {
        let track = run(crepe, &tone(*seconds, f0), decoder);
        let (close, voiced) = score(&track, f0, *seconds);
        println!(
            "{decoder:?} {name} {:.1} Hz: {:.1}% within 50 cents, {:.1}% voiced",
            f0(0.0),
            close * 100.0,
            voiced * 100.0
        );
        assert!(close >= 0.95, "{decoder:?} {name}: only {close:.3} within 50 cents");
        assert!(voiced >= 0.95, "{decoder:?} {name}: only {voiced:.3} voiced");
        close_all += close;
        voiced_all += voiced;
    }
    println!(
        "{decoder:?} mean: {:.1}% within 50 cents, {:.1}% voiced",
        100.0 * close_all / cases.len() as f64,
        100.0 * voiced_all / cases.len() as f64
    );

    let silent = unvoiced_share(&run(crepe, &vec![0.0; SAMPLE_RATE as usize], decoder));
    let noisy = unvoiced_share(&run(crepe, &noise(1.0), decoder));
    println!(
        "{decoder:?} unvoiced: silence {:.1}%, noise {:.1}%",
        silent * 100.0,
        noisy * 100.0
    );
    assert!(silent >= 0.99, "{decoder:?}: silence only {silent:.3} unvoiced");
    assert!(noisy >= 0.9, "{decoder:?}: noise only {noisy:.3} unvoiced");
}

#[test]
fn tiny_weighted_argmax_is_accurate() {
    let Some(crepe) = common::load(Capacity::Tiny) else { return };
    check_decoder(&crepe, Decoder::WeightedArgmax);
}

#[test]
fn tiny_viterbi_is_accurate() {
    let Some(crepe) = common::load(Capacity::Tiny) else { return };
    check_decoder(&crepe, Decoder::Viterbi);
}

#[test]
fn tiny_argmax_is_accurate() {
    let Some(crepe) = common::load(Capacity::Tiny) else { return };
    check_decoder(&crepe, Decoder::Argmax);
}
