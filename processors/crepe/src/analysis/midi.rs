//! Standard MIDI File writer (format 0: one track, channel 1).

use super::notes::Note;

/// Ticks per quarter note in the file's header.
pub const TICKS_PER_QUARTER: u16 = 480;

/// Tempo used when the given one is not a positive finite number.
const FALLBACK_BPM: f64 = 120.0;

/// A Standard MIDI File (format 0) holding `notes` on channel 1, with a
/// tempo meta event for `bpm` so that the notes' times in seconds land on
/// the right ticks. Notes with non-finite or negative times are skipped; a
/// note always lasts at least one tick.
pub fn midi_file(notes: &[Note], bpm: f64) -> Vec<u8> {
    let bpm = if bpm.is_finite() && bpm > 0.0 {
        bpm
    } else {
        FALLBACK_BPM
    };
    // Microseconds per quarter note is a 24-bit field.
    let us_per_quarter = (60_000_000.0 / bpm).round().clamp(1.0, 16_777_215.0) as u32;
    let ticks_per_second = TICKS_PER_QUARTER as f64 * 1_000_000.0 / us_per_quarter as f64;
    let to_tick = |s: f64| (s * ticks_per_second).round().min(u32::MAX as f64 / 2.0) as u64;

    // (tick, order, bytes): at equal ticks note-offs (0) come before note-ons (1).
    let mut events: Vec<(u64, u8, [u8; 3])> = Vec::with_capacity(notes.len() * 2);
    for n in notes {
        if !(n.start.is_finite() && n.end.is_finite() && n.start >= 0.0) {
            continue;
        }
        let key = n.midi.min(127);
        let on = to_tick(n.start);
        let off = to_tick(n.end).max(on + 1);
        events.push((on, 1, [0x90, key, n.velocity.clamp(1, 127)]));
        events.push((off, 0, [0x80, key, 0x40]));
    }
    events.sort_by_key(|&(tick, order, _)| (tick, order));

    let mut track = Vec::with_capacity(32 + events.len() * 5);
    // Tempo: FF 51 03 tttttt.
    track.extend_from_slice(&[0x00, 0xFF, 0x51, 0x03]);
    track.extend_from_slice(&us_per_quarter.to_be_bytes()[1..]);
    // Time signature 4/4 (24 clocks per click, 8 32nds per quarter).
    track.extend_from_slice(&[0x00, 0xFF, 0x58, 0x04, 4, 2, 24, 8]);
    let mut now = 0u64;
    for (tick, _, bytes) in events {
        write_vlq(&mut track, tick - now);
        track.extend_from_slice(&bytes);
        now = tick;
    }
    track.extend_from_slice(&[0x00, 0xFF, 0x2F, 0x00]);

    let mut out = Vec::with_capacity(22 + track.len());
    out.extend_from_slice(b"MThd");
    out.extend_from_slice(&6u32.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // format 0
    out.extend_from_slice(&1u16.to_be_bytes()); // one track
    out.extend_from_slice(&TICKS_PER_QUARTER.to_be_bytes());
    out.extend_from_slice(b"MTrk");
    out.extend_from_slice(&(track.len() as u32).to_be_bytes());
    out.extend_from_slice(&track);
    out
}

/// MIDI variable-length quantity: 7 bits per byte, most significant first,
/// high bit set on all but the last. Deltas are capped at the format's
/// 28-bit maximum.
fn write_vlq(out: &mut Vec<u8>, value: u64) {
    let mut v = value.min(0x0FFF_FFFF) as u32;
    let mut buf = [0u8; 4];
    let mut i = 3;
    buf[i] = (v & 0x7F) as u8;
    v >>= 7;
    while v > 0 {
        i -= 1;
        buf[i] = (v & 0x7F) as u8 | 0x80;
        v >>= 7;
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlq_matches_the_spec_examples() {
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (0x40, vec![0x40]),
            (0x7F, vec![0x7F]),
            (0x80, vec![0x81, 0x00]),
            (0x2000, vec![0xC0, 0x00]),
            (0x3FFF, vec![0xFF, 0x7F]),
            (0x4000, vec![0x81, 0x80, 0x00]),
            (0x0FFF_FFFF, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = Vec::new();
            write_vlq(&mut out, v);
            assert_eq!(out, bytes, "{v:#x}");
        }
    }
}
