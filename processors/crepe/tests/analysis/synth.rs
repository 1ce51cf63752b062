//! Synthetic material: pitch tracks, harmonic tones, clicks, drums, noise.

use std::f64::consts::PI;

use roar_crepe::PitchTrack;

pub const SR: f64 = 16_000.0;
pub const HOP_S: f64 = 0.01;

/// Hz of a (fractional) MIDI note.
pub fn midi_hz(m: f64) -> f64 {
    440.0 * ((m - 69.0) / 12.0).exp2()
}

/// A 10 ms-hop pitch track of `seconds`, where `f(t)` gives the MIDI pitch
/// of voiced frames (confidence 0.9) and `None` marks unvoiced ones
/// (confidence 0.05, f0 set to a plausible 200 Hz as CREPE would).
pub fn track(seconds: f64, f: impl Fn(f64) -> Option<f64>) -> PitchTrack {
    let n = (seconds / HOP_S).round() as usize;
    let times: Vec<f64> = (0..n).map(|i| i as f64 * HOP_S).collect();
    let pitch: Vec<Option<f64>> = times.iter().map(|&t| f(t)).collect();
    PitchTrack {
        sample_rate: 16_000,
        hop_length: 160,
        f0_hz: pitch
            .iter()
            .map(|p| p.map_or(200.0, midi_hz) as f32)
            .collect(),
        confidence: pitch
            .iter()
            .map(|p| if p.is_some() { 0.9 } else { 0.05 })
            .collect(),
        voiced: pitch.iter().map(Option::is_some).collect(),
        times,
    }
}

/// Deterministic white noise in [-1, 1) (xorshift).
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Adds a harmonic tone (6 partials, 1/k amplitudes, 10 ms fade in/out) of
/// MIDI pitch `midi` at `start` for `dur` seconds into `out`.
pub fn add_tone(out: &mut [f32], midi: f64, start: f64, dur: f64, amp: f64) {
    let f0 = midi_hz(midi);
    let s0 = (start * SR) as usize;
    let n = (dur * SR) as usize;
    let fade = 0.01 * SR;
    for i in 0..n {
        let Some(o) = out.get_mut(s0 + i) else { break };
        let t = i as f64 / SR;
        let env = (i as f64 / fade).min((n - i) as f64 / fade).min(1.0);
        let v: f64 = (1..=6)
            .map(|k| (2.0 * PI * f0 * k as f64 * t).sin() / k as f64)
            .sum();
        *o += (amp * env * v) as f32;
    }
}

/// A sequence of (MIDI notes sounding together, seconds), played back to back.
pub fn chords(parts: &[(&[f64], f64)], amp: f64) -> Vec<f32> {
    let total: f64 = parts.iter().map(|p| p.1).sum();
    let mut out = vec![0.0f32; (total * SR) as usize];
    let mut t = 0.0;
    for (notes, dur) in parts {
        for &m in *notes {
            add_tone(&mut out, m, t, *dur, amp / notes.len() as f64);
        }
        t += dur;
    }
    out
}

/// Clicks (5 ms of decaying 2 kHz) every beat at `bpm` for `seconds`,
/// the first at `offset` seconds.
pub fn click_track(bpm: f64, seconds: f64, offset: f64) -> Vec<f32> {
    let mut out = vec![0.0f32; (seconds * SR) as usize];
    let mut t = offset;
    while t < seconds {
        let s0 = (t * SR).round() as usize;
        for i in 0..(0.02 * SR) as usize {
            if let Some(o) = out.get_mut(s0 + i) {
                let x = i as f64 / SR;
                *o += (0.8 * (-x / 0.005).exp() * (2.0 * PI * 2000.0 * x).sin()) as f32;
            }
        }
        t += 60.0 / bpm;
    }
    out
}

/// A rock beat at `bpm`: kick on 1 and 3, snare on 2 and 4, closed hi-hat on
/// every eighth note, for `seconds`.
pub fn drum_pattern(bpm: f64, seconds: f64) -> Vec<f32> {
    let mut out = vec![0.0f32; (seconds * SR) as usize];
    let hat_noise = noise((0.05 * SR) as usize, 7);
    let snare_noise = noise((0.2 * SR) as usize, 11);
    let eighth = 30.0 / bpm;
    let mut k = 0usize;
    while k as f64 * eighth < seconds {
        let s0 = (k as f64 * eighth * SR).round() as usize;
        let mut put = |i: usize, v: f64| {
            if let Some(o) = out.get_mut(s0 + i) {
                *o += v as f32;
            }
        };
        // Hi-hat: differenced noise (high-passed), 15 ms decay.
        for i in 1..hat_noise.len() {
            let x = i as f64 / SR;
            put(
                i,
                0.15 * (-x / 0.015).exp() * (hat_noise[i] - hat_noise[i - 1]) as f64,
            );
        }
        match k % 4 {
            0 => {
                // Kick: 100 -> 50 Hz sweep, 120 ms decay.
                let mut phase = 0.0;
                for i in 0..(0.4 * SR) as usize {
                    let x = i as f64 / SR;
                    phase += 2.0 * PI * (50.0 + 50.0 * (-x / 0.03).exp()) / SR;
                    put(i, 0.8 * (-x / 0.12).exp() * phase.sin());
                }
            }
            2 => {
                // Snare: noise plus a 190 Hz body, 80 ms decay.
                for (i, nz) in snare_noise.iter().enumerate() {
                    let x = i as f64 / SR;
                    let body = (2.0 * PI * 190.0 * x).sin();
                    put(i, 0.5 * (-x / 0.08).exp() * (0.7 * *nz as f64 + 0.5 * body));
                }
            }
            _ => {}
        }
        k += 1;
    }
    out
}
