//! Tempo on click tracks and a synthetic drum pattern.

use roar_crepe::analysis::{estimate_tempo, Tempo};

use crate::synth::{add_tone, click_track, drum_pattern, noise, SR};

fn check(t: Option<Tempo>, bpm: f64, what: &str) -> Tempo {
    let t = t.unwrap_or_else(|| panic!("{what}: no tempo"));
    eprintln!("{what} {bpm}: {} BPM, confidence {}", t.bpm, t.confidence);
    assert!(
        (t.bpm - bpm).abs() <= 2.0,
        "{what}: {} BPM, want {bpm}",
        t.bpm
    );
    assert!(t.confidence > 0.3, "{what}: {t:?}");
    assert!(t.beats.len() >= 2, "{what}: beats {:?}", t.beats);
    assert!(t.beats.iter().all(|b| b.is_finite()));
    assert!(t.beats.windows(2).all(|w| w[1] > w[0]));
    t
}

#[test]
fn click_tracks() {
    for bpm in [60.0, 90.0, 120.0, 150.0, 180.0, 200.0] {
        let offset = 0.137;
        let t = check(
            estimate_tempo(&click_track(bpm, 12.0, offset)),
            bpm,
            "clicks",
        );
        // Beats land on the clicks.
        let period = 60.0 / bpm;
        assert!(
            t.beats.len() as f64 >= 12.0 / period - 2.0,
            "{bpm}: {} beats",
            t.beats.len()
        );
        for b in &t.beats {
            let phase = (b - offset).rem_euclid(period);
            let off = phase.min(period - phase);
            assert!(off < 0.03, "{bpm}: beat at {b} is {off} s off the clicks");
        }
    }
}

#[test]
fn drum_patterns() {
    for bpm in [90.0, 120.0, 150.0] {
        check(estimate_tempo(&drum_pattern(bpm, 15.0)), bpm, "drums");
    }
}

#[test]
fn drums_under_a_melody() {
    let mut audio = drum_pattern(120.0, 12.0);
    for (i, m) in [60.0, 64.0, 67.0, 72.0, 67.0, 64.0]
        .iter()
        .cycle()
        .take(24)
        .enumerate()
    {
        add_tone(&mut audio, *m, i as f64 * 0.5, 0.5, 0.2);
    }
    check(estimate_tempo(&audio), 120.0, "drums + melody");
}

#[test]
fn silence_noise_tone_and_short_input() {
    assert_eq!(estimate_tempo(&[]), None);
    assert_eq!(estimate_tempo(&vec![0.0; (SR * 10.0) as usize]), None);
    assert_eq!(
        estimate_tempo(&click_track(120.0, 2.0, 0.0)),
        None,
        "too short"
    );

    let white: Vec<f32> = noise((SR * 10.0) as usize, 5)
        .iter()
        .map(|x| 0.3 * x)
        .collect();
    if let Some(t) = estimate_tempo(&white) {
        eprintln!("noise: {} BPM, confidence {}", t.bpm, t.confidence);
        assert!(t.confidence < 0.2, "noise: {t:?}");
        assert!((60.0..=200.0).contains(&t.bpm));
    }
    let mut tone = vec![0.0; (SR * 10.0) as usize];
    add_tone(&mut tone, 69.0, 0.0, 10.0, 0.5);
    if let Some(t) = estimate_tempo(&tone) {
        eprintln!("tone: {} BPM, confidence {}", t.bpm, t.confidence);
        assert!(t.confidence < 0.2, "steady tone: {t:?}");
    }
    let mut nan = click_track(120.0, 10.0, 0.0);
    nan[1234] = f32::NAN;
    check(estimate_tempo(&nan), 120.0, "clicks with a NaN sample");
}
