//! The real CREPE tiny model on a synthetic melody, through the segmenter.

use roar_crepe::analysis::{midi_file, segment_notes, NoteOptions};
use roar_crepe::{Capacity, TrackOptions};

use crate::common;
use crate::synth::add_tone;

#[test]
fn crepe_tiny_melody_to_notes() {
    let crepe = common::load(Capacity::Tiny);
    // (MIDI, seconds): legato steps, a repeated note after a rest, a leap,
    // a low note and a high one.
    let melody = [
        (60, 0.4),
        (62, 0.4),
        (64, 0.4),
        (65, 0.3),
        (0, 0.15),
        (65, 0.3),
        (72, 0.5),
        (0, 0.2),
        (48, 0.5),
        (79, 0.4),
    ];
    let total: f64 = melody.iter().map(|m| m.1).sum::<f64>() + 0.2;
    let mut audio = vec![0.0f32; (total * 16_000.0) as usize];
    let mut t = 0.1;
    let mut want = Vec::new();
    for (midi, dur) in melody {
        if midi > 0 {
            add_tone(&mut audio, midi as f64, t, dur, 0.4);
            want.push(midi as u8);
        }
        t += dur;
    }
    let track = crepe
        .track(&audio, &TrackOptions::default(), &mut |_| true)
        .unwrap();
    let notes = segment_notes(&track, Some(&audio), &NoteOptions::default());
    let got: Vec<u8> = notes.iter().map(|n| n.midi).collect();
    assert_eq!(got, want, "{notes:#?}");
    for n in &notes {
        assert!(n.cents_off.abs() < 25.0 && n.confidence > 0.5, "{n:?}");
    }
    // Onsets within 40 ms of the synthesised ones.
    let mut t = 0.1;
    let mut onsets = Vec::new();
    for (midi, dur) in melody {
        if midi > 0 {
            onsets.push(t);
        }
        t += dur;
    }
    for (n, want) in notes.iter().zip(onsets) {
        assert!(
            (n.start - want).abs() < 0.04,
            "{n:?} should start at {want}"
        );
    }
    assert!(midi_file(&notes, 120.0).starts_with(b"MThd"));
}

#[test]
fn crepe_tiny_vibrato_and_portamento() {
    let crepe = common::load(Capacity::Tiny);
    // A4 with +-60 cents of 5.5 Hz vibrato for 1.5 s, a 100 ms slide up to
    // C5 held 0.8 s, silence, then E4 plain for 0.5 s.
    let sr = 16_000.0;
    let pitch = |t: f64| -> f64 {
        use std::f64::consts::PI;
        if t < 1.5 {
            69.0 + 0.6 * (2.0 * PI * 5.5 * t).sin()
        } else if t < 1.6 {
            69.0 + 3.0 * (t - 1.5) / 0.1
        } else {
            72.0
        }
    };
    let mut audio = vec![0.0f32; (3.2 * sr) as usize];
    let mut phase = 0.0f64;
    for (i, s) in audio.iter_mut().enumerate().take((2.4 * sr) as usize) {
        let t = i as f64 / sr;
        let env = (t / 0.01).min((2.4 - t) / 0.01).min(1.0);
        phase += 2.0 * std::f64::consts::PI * 440.0 * ((pitch(t) - 69.0) / 12.0).exp2() / sr;
        let v: f64 = (1..=6).map(|k| (k as f64 * phase).sin() / k as f64).sum();
        *s = (0.4 * env * v) as f32;
    }
    add_tone(&mut audio, 64.0, 2.6, 0.5, 0.4);
    let track = crepe
        .track(&audio, &TrackOptions::default(), &mut |_| true)
        .unwrap();
    let notes = segment_notes(&track, Some(&audio), &NoteOptions::default());
    let got: Vec<u8> = notes.iter().map(|n| n.midi).collect();
    assert_eq!(got, vec![69, 72, 64], "{notes:#?}");
    assert!((notes[0].end - notes[0].start) > 1.4, "{notes:#?}");
}
