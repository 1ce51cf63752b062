//! The real CREPE tiny model on a synthetic melody, through the segmenter.

use roar_crepe::analysis::{midi_file, segment_notes, NoteOptions};
use roar_crepe::{Capacity, TrackOptions};

use crate::common;
use crate::synth::add_tone;

#[test]
fn crepe_tiny_melody_to_notes() {
    let Some(crepe) = common::load(Capacity::Tiny) else {
        return;
    };
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
