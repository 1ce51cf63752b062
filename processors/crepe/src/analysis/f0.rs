//! The f0 curve as CSV and JSON, one row per frame.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::track::PitchTrack;

/// Fractional MIDI note number of a frequency (69 = A4 = 440 Hz); `None`
/// for a frequency that is not finite and positive.
pub fn hz_to_midi(hz: f32) -> Option<f32> {
    let m = 69.0 + 12.0 * (hz as f64 / 440.0).log2();
    (hz > 0.0 && m.is_finite()).then_some(m as f32)
}

/// One frame's (time, hz, midi, confidence, voiced), with hz/midi `None`
/// when the frame is unvoiced or its pitch is not a usable number.
fn rows(
    track: &PitchTrack,
) -> impl Iterator<Item = (f64, Option<f32>, Option<f32>, f32, bool)> + '_ {
    let n = track
        .times
        .len()
        .min(track.f0_hz.len())
        .min(track.confidence.len())
        .min(track.voiced.len());
    (0..n).map(move |i| {
        let time = if track.times[i].is_finite() {
            track.times[i]
        } else {
            0.0
        };
        let hz = track.f0_hz[i];
        let midi = hz_to_midi(hz);
        let voiced = track.voiced[i] && midi.is_some();
        let conf = track.confidence[i];
        let conf = if conf.is_finite() {
            conf.clamp(0.0, 1.0)
        } else {
            0.0
        };
        (
            time,
            voiced.then_some(hz),
            midi.filter(|_| voiced),
            conf,
            voiced,
        )
    })
}

/// CSV with header `time,hz,midi,confidence,voiced`: seconds, Hz and
/// fractional MIDI (both empty when unvoiced), confidence in [0, 1], and
/// voiced as `1`/`0`.
pub fn f0_csv(track: &PitchTrack) -> String {
    let mut out = String::from("time,hz,midi,confidence,voiced\n");
    for (time, hz, midi, conf, voiced) in rows(track) {
        let hz = hz.map(|h| format!("{h:.3}")).unwrap_or_default();
        let midi = midi.map(|m| format!("{m:.3}")).unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{time:.4},{hz},{midi},{conf:.4},{}", u8::from(voiced));
    }
    out
}

/// `{sample_rate, hop_length, frames: [{time, hz, midi, confidence,
/// voiced}]}`, with `hz` and `midi` null when unvoiced.
pub fn f0_json(track: &PitchTrack) -> Value {
    let frames: Vec<Value> = rows(track)
        .map(|(time, hz, midi, conf, voiced)| {
            json!({
                "time": round(time, 4),
                "hz": hz.map(|h| round(h as f64, 3)),
                "midi": midi.map(|m| round(m as f64, 3)),
                "confidence": round(conf as f64, 4),
                "voiced": voiced,
            })
        })
        .collect();
    json!({
        "sample_rate": track.sample_rate,
        "hop_length": track.hop_length,
        "frames": frames,
    })
}

/// Rounds to `digits` decimals so the JSON stays compact; `x` is finite.
fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midi_of_a4_and_bad_input() {
        assert!((hz_to_midi(440.0).unwrap() - 69.0).abs() < 1e-5);
        assert!((hz_to_midi(261.6256).unwrap() - 60.0).abs() < 1e-4);
        assert_eq!(hz_to_midi(0.0), None);
        assert_eq!(hz_to_midi(f32::NAN), None);
        assert_eq!(hz_to_midi(-5.0), None);
    }
}
