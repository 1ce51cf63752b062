//! The Standard MIDI File writer, checked with a small parser written here.

use roar_crepe::analysis::{midi_file, Note, TICKS_PER_QUARTER};

/// What the parser finds in a format-0 file.
#[derive(Debug)]
struct Parsed {
    division: u16,
    us_per_quarter: u32,
    /// (on tick, off tick, key, velocity), in note-on order.
    notes: Vec<(u64, u64, u8, u8)>,
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn read_vlq(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    for _ in 0..4 {
        let byte = b[*pos];
        *pos += 1;
        v = (v << 7) | (byte & 0x7F) as u64;
        if byte & 0x80 == 0 {
            return v;
        }
    }
    panic!("VLQ longer than 4 bytes");
}

fn parse(b: &[u8]) -> Parsed {
    assert_eq!(&b[0..4], b"MThd");
    assert_eq!(read_u32(b, 4), 6);
    assert_eq!(u16::from_be_bytes([b[8], b[9]]), 0, "format 0");
    assert_eq!(u16::from_be_bytes([b[10], b[11]]), 1, "one track");
    let division = u16::from_be_bytes([b[12], b[13]]);
    assert_eq!(&b[14..18], b"MTrk");
    let len = read_u32(b, 18) as usize;
    assert_eq!(
        b.len(),
        22 + len,
        "track length must cover the rest of the file"
    );
    let mut pos = 22;
    let mut tick = 0u64;
    let mut us_per_quarter = 500_000;
    let mut open: Vec<(u64, u8, u8)> = Vec::new();
    let mut notes = Vec::new();
    let mut ended = false;
    while pos < b.len() {
        assert!(!ended, "events after end of track");
        tick += read_vlq(b, &mut pos);
        let status = b[pos];
        pos += 1;
        match status {
            0xFF => {
                let kind = b[pos];
                pos += 1;
                let n = read_vlq(b, &mut pos) as usize;
                let data = &b[pos..pos + n];
                pos += n;
                match kind {
                    0x51 => {
                        assert_eq!(n, 3);
                        us_per_quarter = u32::from_be_bytes([0, data[0], data[1], data[2]]);
                    }
                    0x2F => ended = true,
                    _ => {}
                }
            }
            0x90 | 0x80 => {
                let (key, vel) = (b[pos], b[pos + 1]);
                pos += 2;
                assert!(key < 128 && vel < 128);
                if status == 0x90 && vel > 0 {
                    assert!(open.iter().all(|o| o.1 != key), "key {key} on twice");
                    open.push((tick, key, vel));
                } else {
                    let i = open
                        .iter()
                        .position(|o| o.1 == key)
                        .expect("off without on");
                    let (on, key, vel) = open.remove(i);
                    notes.push((on, tick, key, vel));
                }
            }
            s => panic!("unexpected status {s:#x}"),
        }
    }
    assert!(ended, "no end-of-track event");
    assert!(open.is_empty(), "notes left on: {open:?}");
    notes.sort_by_key(|n| n.0);
    Parsed {
        division,
        us_per_quarter,
        notes,
    }
}

fn note(start: f64, end: f64, midi: u8, velocity: u8) -> Note {
    Note {
        start,
        end,
        midi,
        hz: 440.0,
        cents_off: 0.0,
        confidence: 0.9,
        velocity,
    }
}

#[test]
fn notes_come_back_at_their_times() {
    let notes = vec![
        note(0.0, 0.5, 60, 100),
        note(0.5, 1.0, 60, 90), // same key, touching: off must precede on
        note(1.25, 1.75, 64, 70),
        note(2.0, 3.333, 67, 127),
        note(30.0, 31.0, 72, 1),
    ];
    for bpm in [120.0, 90.0, 137.5] {
        let p = parse(&midi_file(&notes, bpm));
        assert_eq!(p.division, TICKS_PER_QUARTER);
        let us = (60_000_000.0 / bpm).round() as u32;
        assert_eq!(p.us_per_quarter, us);
        assert_eq!(p.notes.len(), notes.len());
        let sec = |tick: u64| tick as f64 * us as f64 / 1e6 / p.division as f64;
        let tick_s = us as f64 / 1e6 / p.division as f64;
        for (got, want) in p.notes.iter().zip(&notes) {
            assert_eq!((got.2, got.3), (want.midi, want.velocity));
            assert!(
                (sec(got.0) - want.start).abs() <= tick_s / 2.0 + 1e-9,
                "{bpm}: {got:?} {want:?}"
            );
            assert!(
                (sec(got.1) - want.end).abs() <= tick_s / 2.0 + 1e-9,
                "{bpm}: {got:?} {want:?}"
            );
        }
    }
}

#[test]
fn odd_input_still_gives_a_valid_file() {
    // No notes, bad tempo: header, tempo at 120 BPM, end of track.
    for bpm in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let p = parse(&midi_file(&[], bpm));
        assert_eq!(p.us_per_quarter, 500_000);
        assert!(p.notes.is_empty());
    }
    // Zero-length and unordered notes, NaN times, velocity 0 and key > 127.
    let notes = vec![
        note(1.0, 1.0, 60, 0),
        note(0.5, 0.6, 200, 80),
        note(f64::NAN, 1.0, 61, 80),
        note(0.2, f64::INFINITY, 62, 80),
    ];
    let p = parse(&midi_file(&notes, 100.0));
    assert_eq!(p.notes.len(), 2);
    assert_eq!((p.notes[0].2, p.notes[0].3), (127, 80));
    let last = p.notes[1];
    assert_eq!((last.2, last.3), (60, 1));
    assert_eq!(last.1, last.0 + 1, "a zero-length note lasts one tick");
}

#[test]
fn very_slow_tempo_clamps_to_the_24_bit_field() {
    let p = parse(&midi_file(&[note(0.0, 1.0, 60, 64)], 1.0));
    assert_eq!(p.us_per_quarter, 16_777_215);
    assert_eq!(p.notes.len(), 1);
}
