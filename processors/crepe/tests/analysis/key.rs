//! Key estimation on synthetic harmonic material.

use roar_crepe::analysis::{estimate_key, Key};

use crate::synth::{chords, noise, SR};

/// A major-key passage: scale up from the tonic, then I-IV-V-I, shifted by
/// `transpose` semitones from C.
fn major_passage(transpose: f64) -> Vec<f32> {
    let t = |m: &[f64]| m.iter().map(|x| x + transpose).collect::<Vec<_>>();
    let scale: Vec<Vec<f64>> = [60.0, 62.0, 64.0, 65.0, 67.0, 69.0, 71.0, 72.0]
        .iter()
        .map(|&m| t(&[m]))
        .collect();
    let cadence = [
        t(&[48.0, 60.0, 64.0, 67.0]),
        t(&[53.0, 60.0, 65.0, 69.0]),
        t(&[55.0, 59.0, 62.0, 67.0]),
        t(&[48.0, 60.0, 64.0, 67.0]),
    ];
    let mut parts: Vec<(&[f64], f64)> = scale.iter().map(|s| (s.as_slice(), 0.3)).collect();
    parts.extend(cadence.iter().map(|c| (c.as_slice(), 1.0)));
    chords(&parts, 0.5)
}

fn check(key: Option<Key>, name: &str) -> Key {
    let key = key.expect("a key");
    eprintln!("{name}: {key:?}");
    assert_eq!(key.name, name, "{key:?}");
    assert_eq!(key.name, format!("{} {}", key.tonic, key.mode));
    assert!(key.confidence > 0.5, "{key:?}");
    assert!(key
        .chroma
        .iter()
        .all(|c| c.is_finite() && (0.0..=1.0).contains(c)));
    assert!(serde_json::to_string(&key).is_ok());
    key
}

#[test]
fn c_major_scale_and_cadence() {
    let key = check(estimate_key(&major_passage(0.0)), "C major");
    // The tonic triad's pitch classes dominate the chroma.
    let c = &key.chroma;
    for black in [1, 3, 6, 8, 10] {
        assert!(
            c[black] < c[0] && c[black] < c[4] && c[black] < c[7],
            "{c:?}"
        );
    }
}

#[test]
fn detuned_recording() {
    // 40 cents sharp and 35 cents flat of A440: same key, tuning reported.
    for (shift, cents) in [(0.4, 40.0), (-0.35, -35.0)] {
        let key = check(estimate_key(&major_passage(shift)), "C major");
        assert!((key.tuning_cents - cents).abs() < 5.0, "{key:?}");
    }
    let key = check(estimate_key(&major_passage(0.0)), "C major");
    assert!(key.tuning_cents.abs() < 5.0, "{key:?}");
}

#[test]
fn transposed_major_keys() {
    check(estimate_key(&major_passage(6.0)), "F# major");
    check(estimate_key(&major_passage(-5.0)), "G major");
    check(estimate_key(&major_passage(3.0)), "D# major");
}

#[test]
fn a_harmonic_minor() {
    // A harmonic minor scale, then i-iv-V-i (the V is E major, with G#).
    let scale = [57.0, 59.0, 60.0, 62.0, 64.0, 65.0, 68.0, 69.0].map(|m| vec![m]);
    let cadence = [
        vec![45.0, 57.0, 60.0, 64.0],
        vec![50.0, 57.0, 62.0, 65.0],
        vec![52.0, 56.0, 59.0, 64.0],
        vec![45.0, 57.0, 60.0, 64.0],
    ];
    let mut parts: Vec<(&[f64], f64)> = scale.iter().map(|s| (s.as_slice(), 0.3)).collect();
    parts.extend(cadence.iter().map(|c| (c.as_slice(), 1.0)));
    check(estimate_key(&chords(&parts, 0.5)), "A minor");
}

#[test]
fn a_minor_triads_transposed_to_c_sharp_minor() {
    let shift = 4.0;
    let prog: Vec<Vec<f64>> = [
        [45.0, 57.0, 60.0, 64.0],
        [50.0, 57.0, 62.0, 65.0],
        [52.0, 56.0, 59.0, 64.0],
        [45.0, 57.0, 60.0, 64.0],
    ]
    .iter()
    .map(|c| c.iter().map(|m| m + shift).collect())
    .collect();
    let parts: Vec<(&[f64], f64)> = prog.iter().map(|c| (c.as_slice(), 1.0)).collect();
    check(estimate_key(&chords(&parts, 0.5)), "C# minor");
}

#[test]
fn silence_short_and_noise() {
    assert_eq!(estimate_key(&[]), None);
    assert_eq!(estimate_key(&vec![0.0; 16_000 * 3]), None);
    assert_eq!(
        estimate_key(&vec![1e-6; 16_000 * 3]),
        None,
        "below -60 dBFS"
    );
    assert_eq!(estimate_key(&major_passage(0.0)[..1000]), None, "too short");
    let mut nan = major_passage(0.0);
    nan[5000] = f32::NAN;
    assert_eq!(check(estimate_key(&nan), "C major").mode, "major");

    let white: Vec<f32> = noise((SR * 5.0) as usize, 3)
        .iter()
        .map(|x| 0.3 * x)
        .collect();
    if let Some(k) = estimate_key(&white) {
        eprintln!("noise: {k:?}");
        assert!(k.confidence < 0.3, "noise: {k:?}");
        assert!(k.chroma.iter().all(|c| c.is_finite()));
    }
}
