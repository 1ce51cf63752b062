//! Note segmentation on synthetic pitch tracks.

use std::f64::consts::PI;

use roar_crepe::analysis::{segment_notes, Note, NoteOptions};
use roar_crepe::PitchTrack;

use crate::synth::{add_tone, track};

fn notes(t: &PitchTrack) -> Vec<Note> {
    segment_notes(t, None, &NoteOptions::default())
}

fn midis(notes: &[Note]) -> Vec<u8> {
    notes.iter().map(|n| n.midi).collect()
}

fn assert_sane(notes: &[Note]) {
    for w in notes.windows(2) {
        assert!(w[0].end <= w[1].start + 1e-9, "overlap: {w:?}");
    }
    for n in notes {
        assert!(n.start.is_finite() && n.end > n.start, "{n:?}");
        assert!(n.hz.is_finite() && n.cents_off.abs() <= 50.0, "{n:?}");
        assert!((0.0..=1.0).contains(&n.confidence) && (1..=127).contains(&n.velocity));
    }
    let json = serde_json::to_string(notes).unwrap();
    assert!(!json.contains("null") && !json.contains("NaN"), "{json}");
}

#[test]
fn steps_become_notes_at_the_right_times() {
    let seq = [60.0, 64.0, 67.0, 65.0, 66.0];
    // 66 is a semitone above 65: the smallest step that must still split.
    let t = track(2.5, |t| Some(seq[((t / 0.5) as usize).min(4)] + 0.1));
    let n = notes(&t);
    assert_sane(&n);
    assert_eq!(midis(&n), vec![60, 64, 67, 65, 66]);
    for (i, note) in n.iter().enumerate() {
        assert!((note.start - 0.5 * i as f64).abs() <= 0.011, "{note:?}");
        assert!((note.cents_off - 10.0).abs() < 0.5, "{note:?}");
    }
    assert!((n[4].end - 2.5).abs() <= 0.011);
}

#[test]
fn vibrato_stays_one_note() {
    for rate in [4.5, 5.5, 7.0] {
        for depth in [30.0, 60.0, 90.0] {
            let t = track(2.0, |t| {
                Some(69.0 + depth / 100.0 * (2.0 * PI * rate * t).sin())
            });
            let n = notes(&t);
            assert_sane(&n);
            assert_eq!(midis(&n), vec![69], "rate {rate} depth {depth}: {n:?}");
            assert!(n[0].end - n[0].start > 1.98);
            assert!(n[0].cents_off.abs() < 15.0, "{n:?}");
        }
    }
}

#[test]
fn portamento_between_held_notes_gives_two_notes() {
    // 60 for 0.5 s, 80 ms slide, 62 for 0.5 s.
    let t = track(1.08, |t| {
        Some(if t < 0.5 {
            60.0
        } else if t < 0.58 {
            60.0 + 2.0 * (t - 0.5) / 0.08
        } else {
            62.0
        })
    });
    let n = notes(&t);
    assert_sane(&n);
    assert_eq!(midis(&n), vec![60, 62], "{n:?}");
    assert!(n[0].end > 0.49 && n[1].start < 0.59, "{n:?}");
}

#[test]
fn slow_glide_becomes_a_rising_staircase() {
    // 48 -> 72 over 2 s.
    let t = track(2.0, |t| Some(48.0 + 12.0 * t));
    let n = notes(&t);
    assert_sane(&n);
    assert!(n.len() >= 8, "{n:?}");
    assert!(
        n.windows(2).all(|w| w[1].midi > w[0].midi),
        "{:?}",
        midis(&n)
    );
    assert!(
        n[0].midi <= 50 && n.last().unwrap().midi >= 70,
        "{:?}",
        midis(&n)
    );
    // Pieces cover the glide without holes bigger than a dropped piece.
    let covered: f64 = n.iter().map(|x| x.end - x.start).sum();
    assert!(covered > 1.6, "{covered}");
}

#[test]
fn unvoiced_gaps_split_notes_and_dropouts_do_not() {
    // Same pitch twice, 100 ms of unvoiced frames between.
    let t = track(1.1, |t| (!(0.5..0.6).contains(&t)).then_some(67.0));
    let n = notes(&t);
    assert_sane(&n);
    assert_eq!(midis(&n), vec![67, 67]);
    assert!(
        (n[0].end - 0.495).abs() < 0.011 && (n[1].start - 0.595).abs() < 0.011,
        "{n:?}"
    );

    // A single-frame voicing dropout inside a note is bridged.
    let t = track(1.0, |t| (!(0.5..0.51).contains(&t)).then_some(67.0));
    assert_eq!(midis(&notes(&t)), vec![67]);

    // With max_gap 0 it is not.
    let strict = NoteOptions {
        max_gap: 0.0,
        ..NoteOptions::default()
    };
    assert_eq!(midis(&segment_notes(&t, None, &strict)), vec![67, 67]);
}

#[test]
fn short_blips_are_dropped() {
    // 30 ms blip alone, then a real note.
    let t = track(1.0, |t| {
        if t < 0.03 {
            Some(72.0)
        } else if t >= 0.3 {
            Some(60.0)
        } else {
            None
        }
    });
    assert_eq!(midis(&notes(&t)), vec![60]);

    // A 40 ms octave jump inside a held note neither splits nor shows up.
    let t = track(1.0, |t| {
        Some(if (0.5..0.54).contains(&t) { 69.0 } else { 57.0 })
    });
    let n = notes(&t);
    assert_eq!(midis(&n), vec![57], "{n:?}");

    // min_duration is honoured.
    let long = NoteOptions {
        min_duration: 0.5,
        ..NoteOptions::default()
    };
    let t = track(1.0, |t| Some(if t < 0.3 { 60.0 } else { 62.0 }));
    assert_eq!(midis(&segment_notes(&t, None, &long)), vec![62]);
}

#[test]
fn degenerate_tracks_give_no_notes_and_no_nan() {
    let empty = track(0.0, |_| Some(60.0));
    assert!(notes(&empty).is_empty());
    assert!(notes(&track(1.0, |_| None)).is_empty());

    let mut bad = track(1.0, |_| Some(60.0));
    for (i, f) in bad.f0_hz.iter_mut().enumerate() {
        *f = [f32::NAN, f32::INFINITY, 0.0, -3.0][i % 4];
    }
    assert!(notes(&bad).is_empty());

    // Mismatched vector lengths and NaN confidences are tolerated.
    let mut odd = track(1.0, |_| Some(60.0));
    odd.voiced.truncate(50);
    odd.confidence[10] = f32::NAN;
    let n = notes(&odd);
    assert_sane(&n);
    assert_eq!(midis(&n), vec![60]);
    assert!(n[0].end <= 0.5 + 1e-9);

    // No hop or sample rate: the frame spacing comes from the times; absurd
    // times with audio do not overflow.
    let mut no_hop = track(1.0, |_| Some(60.0));
    no_hop.sample_rate = 0;
    no_hop.hop_length = 0;
    assert_eq!(midis(&notes(&no_hop)), vec![60]);
    no_hop.times[99] = 1e300;
    no_hop.times[98] = f64::NAN;
    let n = segment_notes(&no_hop, Some(&[0.1; 16_000]), &NoteOptions::default());
    assert_sane(&n);

    // Nonsense options fall back to something usable.
    let weird = NoteOptions {
        min_duration: f64::NAN,
        max_cents_jump: f32::NAN,
        stability_window: -1.0,
        merge_cents: f32::INFINITY,
        max_gap: f64::INFINITY,
        min_confidence: f32::NAN,
        silence_db: f32::NAN,
        default_velocity: 0,
    };
    let t = track(1.0, |t| Some(if t < 0.5 { 60.0 } else { 64.0 }));
    let n = segment_notes(&t, None, &weird);
    assert_sane(&n);
    assert!(!n.is_empty());

    // Pitches outside MIDI's range are dropped, not wrapped.
    let t = track(1.0, |_| Some(-20.0));
    assert!(notes(&t).is_empty());
}

#[test]
fn audio_sets_velocity_and_silences_frames() {
    // Loud 60 for 0.5 s, quiet 64 (-20 dB) for 0.5 s, then 0.5 s of silence
    // where the track still (wrongly) claims a voiced 67.
    let mut audio = vec![0.0f32; 24_000];
    add_tone(&mut audio, 60.0, 0.0, 0.5, 0.5);
    add_tone(&mut audio, 64.0, 0.5, 0.5, 0.05);
    let t = track(1.5, |t| {
        Some(if t < 0.5 {
            60.0
        } else if t < 1.0 {
            64.0
        } else {
            67.0
        })
    });
    let n = segment_notes(&t, Some(&audio), &NoteOptions::default());
    assert_sane(&n);
    assert_eq!(midis(&n), vec![60, 64], "{n:?}");
    assert!(n[0].velocity > n[1].velocity + 30, "{n:?}");
    assert!(n[1].velocity > 1);
    assert!(n[1].end < 1.02, "{n:?}");

    // Without audio every note gets the default velocity.
    let n = notes(&t);
    assert!(!n.is_empty());
    assert!(n
        .iter()
        .all(|x| x.velocity == NoteOptions::default().default_velocity));
}

#[test]
fn options_round_trip_through_json() {
    let opts: NoteOptions = serde_json::from_str(r#"{"min_duration": 0.1}"#).unwrap();
    assert_eq!(opts.min_duration, 0.1);
    assert_eq!(opts.max_cents_jump, NoteOptions::default().max_cents_jump);
}

#[test]
fn fast_legato_runs() {
    // A C major scale up and down and a chromatic run, without gaps, with
    // notes down to 90 ms (shorter turn-around notes get absorbed).
    let scale = [
        60.0, 62.0, 64.0, 65.0, 67.0, 69.0, 71.0, 72.0, 71.0, 69.0, 67.0,
    ];
    let chromatic = [60.0, 61.0, 62.0, 63.0, 64.0, 63.0, 62.0];
    for run in [&scale[..], &chromatic[..]] {
        for len in [0.09, 0.1, 0.12, 0.15, 0.2, 0.25] {
            let total = len * run.len() as f64;
            let t = track(total, |t| {
                Some(run[((t / len) as usize).min(run.len() - 1)])
            });
            let want: Vec<u8> = run.iter().map(|&m| m as u8).collect();
            let n = notes(&t);
            assert_sane(&n);
            eprintln!("{len}: {:?}", midis(&n));
            assert_eq!(midis(&n), want, "{len} s notes");
            for (i, note) in n.iter().enumerate() {
                assert!(
                    (note.start - len * i as f64).abs() <= 0.011,
                    "{len}: {note:?}"
                );
            }
        }
    }
}
