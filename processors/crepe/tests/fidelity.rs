//! Compares roar-crepe with torchcrepe on the fixture made by
//! `scripts/crepe/make_fixture.py` (sine, chirp, noise, silence).

mod common;

use common::{load, read_npy};
use roar_crepe::convert::{bin_range, cents_between};
use roar_crepe::decode::{decode, Decoder};
use roar_crepe::frames::frame;
use roar_crepe::{Capacity, TrackOptions, PITCH_BINS, WINDOW_SIZE};
use roar_testkit::assert_close;

const TOLERANCE: f32 = 1e-4;
const HOP: usize = 256;
const REPEAT: usize = 16;

#[test]
fn framing_matches_torchcrepe_preprocess() {
    let audio = read_npy("audio.npy");
    let want = read_npy("frames.npy");
    let got = frame(&audio.data, HOP, true);
    let err = assert_close("framing", &got, &want.data, TOLERANCE);
    println!("framing max abs error: {err:e}");
}

fn check_activations(capacity: Capacity) {
    let crepe = load(capacity);
    let frames = read_npy("frames.npy");
    let want = read_npy(&format!("act_{capacity}.npy"));
    assert_eq!(want.shape, vec![frames.shape[0], PITCH_BINS]);

    // The network alone, on torchcrepe's own frames.
    let got = crepe.activations_vec(&frames.data).unwrap();
    let err = assert_close(&format!("{capacity} network"), &got, &want.data, TOLERANCE);
    println!("{capacity}: network max abs error {err:e}");

    // Framing + network, in small batches, from the raw audio.
    let audio = read_npy("audio.npy");
    let opts = TrackOptions {
        hop_length: HOP,
        batch_size: Some(7),
        ..TrackOptions::default()
    };
    let mut calls = 0;
    let got = crepe
        .track_activations(&audio.data, &opts, &mut |_| {
            calls += 1;
            true
        })
        .unwrap();
    let err = assert_close(
        &format!("{capacity} end to end"),
        &got,
        &want.data,
        TOLERANCE,
    );
    println!("{capacity}: end-to-end max abs error {err:e}");
    assert_eq!(calls, 1 + frames.shape[0].div_ceil(7));
    assert_eq!(frames.shape[1], WINDOW_SIZE);
}

#[test]
fn tiny_activations_match_torchcrepe() {
    check_activations(Capacity::Tiny);
}

#[test]
fn full_activations_match_torchcrepe() {
    check_activations(Capacity::Full);
}

fn check_decoder(capacity: Capacity, name: &str, decoder: Decoder, repeat: usize) {
    let act = read_npy(&format!("act_{capacity}.npy")).data;
    let act: Vec<f32> = act
        .chunks_exact(PITCH_BINS)
        .flat_map(|row| std::iter::repeat_n(row, repeat).flatten().copied())
        .collect();
    let suffix = if repeat > 1 {
        format!("_rep{repeat}")
    } else {
        String::new()
    };
    let want = read_npy(&format!("dec_{capacity}_{name}{suffix}.npy"));
    let n = act.len() / PITCH_BINS;
    assert_eq!(want.shape, vec![2, n]);
    let d = decode(&act, bin_range(50.0, 2006.0, PITCH_BINS), decoder);
    let (want_hz, want_p) = want.data.split_at(n);
    let what = format!("{capacity} {name}{suffix}");
    // Pitch compared in cents from the reference's, against zero.
    assert_eq!(d.f0_hz.len(), n, "{what}: frames");
    let off: Vec<f32> = d
        .f0_hz
        .iter()
        .zip(want_hz)
        .map(|(&a, &b)| cents_between(a as f64, b as f64) as f32)
        .collect();
    let worst_cents = assert_close(&format!("{what}: cents off"), &off, &vec![0.0; n], 0.01);
    let p_err = assert_close(
        &format!("{what}: periodicity"),
        &d.periodicity,
        want_p,
        1e-6,
    );
    println!("{what}: pitch within {worst_cents:.2e} cents, periodicity {p_err:e}");
}

#[test]
fn decoders_match_torchcrepe() {
    for capacity in [Capacity::Tiny, Capacity::Full] {
        for repeat in [1, REPEAT] {
            check_decoder(capacity, "argmax", Decoder::Argmax, repeat);
            check_decoder(capacity, "weighted_argmax", Decoder::WeightedArgmax, repeat);
            check_decoder(capacity, "viterbi", Decoder::Viterbi, repeat);
        }
    }
}
