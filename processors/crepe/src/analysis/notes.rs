//! Note segmentation: turns the frame-wise f0 curve into discrete notes.
//!
//! 1. A frame is usable when it is voiced, confident enough, has a finite
//!    positive pitch and (when the audio is given) is not silent.
//! 2. Usable frames form runs; an unvoiced gap splits a run unless it is at
//!    most `max_gap` long and not silent (CREPE's voicing flickers for a frame
//!    or two inside sustained notes).
//! 3. Inside a run the pitch (fractional MIDI) loses its glitches to a short
//!    running median (`BLIP_SECONDS`), then goes through a centred running
//!    mean one vibrato cycle long (`stability_window`). A mean over a full
//!    cycle cancels vibrato (a median of the same length leaks up to half
//!    the vibrato depth, enough to split a +-90 cent vibrato).
//! 4. A new piece starts where that smoothed pitch leaves the median of the
//!    piece's recent frames by more than `max_cents_jump`; a glide therefore
//!    becomes a staircase of notes.
//! 5. Pieces shorter than the smoothing window are folded into the nearer
//!    touching piece when within `merge_cents` of it (vibrato leaking at a
//!    run's edges, where the window shrinks) or shorter than `min_duration`
//!    (the middle of a portamento). Touching pieces with the same rounded
//!    median pitch are merged.
//! 6. The mean blurs steps, so each boundary is moved to the frame that best
//!    separates the two pieces' levels.
//! 7. Each note's MIDI number is the rounded median pitch of its frames;
//!    notes shorter than `min_duration` (isolated blips) are dropped.

use serde::{Deserialize, Serialize};

use super::f0::hz_to_midi;
use super::pieces::{pieces, Cut};
use super::spectrum::rms_db;
use super::stats::{finite_or, median};
use crate::track::PitchTrack;

/// A segmented note. Times are seconds from the start of the audio; `end` is
/// exclusive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub start: f64,
    pub end: f64,
    /// MIDI note number (60 = C4).
    pub midi: u8,
    /// Median frequency of the note's frames, Hz.
    pub hz: f32,
    /// How far that median lies from `midi`, in cents (-50..50).
    pub cents_off: f32,
    /// Mean CREPE confidence of the note's frames.
    pub confidence: f32,
    /// MIDI velocity (1-127): from the note's median frame level when the
    /// audio is given, else `NoteOptions::default_velocity`.
    pub velocity: u8,
}

/// Glitches (octave jumps, voicing errors) up to about half this long are
/// removed before segmentation.
const BLIP_SECONDS: f64 = 0.09;

/// Settings for [`segment_notes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoteOptions {
    /// Notes shorter than this (seconds) are dropped.
    pub min_duration: f64,
    /// A new note starts where the smoothed pitch strays further than this
    /// (cents) from the current note.
    pub max_cents_jump: f32,
    /// Length (seconds) of the running mean that smooths the pitch before
    /// splitting: at least one vibrato cycle (4.8 Hz and up at 0.21 s).
    /// Legato notes much shorter than it, less than a semitone or two away
    /// from their neighbours, are absorbed.
    pub stability_window: f64,
    /// A piece shorter than `stability_window` that lies within this many
    /// cents of a touching neighbour is folded into it (vibrato and drift at
    /// note edges rather than a note of its own).
    pub merge_cents: f32,
    /// Unvoiced gaps up to this long (seconds) inside a note are bridged.
    pub max_gap: f64,
    /// Frames below this confidence count as unvoiced (on top of the track's
    /// own voicing flag).
    pub min_confidence: f32,
    /// With audio: frames quieter than this (dBFS) count as unvoiced, and
    /// velocity scales from here (1) to 0 dBFS (127).
    pub silence_db: f32,
    /// Velocity of every note when no audio is given.
    pub default_velocity: u8,
}

impl Default for NoteOptions {
    fn default() -> Self {
        Self {
            min_duration: 0.06,
            max_cents_jump: 50.0,
            stability_window: 0.21,
            merge_cents: 75.0,
            max_gap: 0.02,
            min_confidence: 0.0,
            silence_db: -60.0,
            default_velocity: 80,
        }
    }
}

/// Frame count of the track (the shortest of its vectors).
fn frame_count(track: &PitchTrack) -> usize {
    track
        .times
        .len()
        .min(track.f0_hz.len())
        .min(track.confidence.len())
        .min(track.voiced.len())
}

/// Seconds between frames, from the hop (or the frame times when the hop is
/// unusable); 10 ms as a last resort.
fn hop_seconds(track: &PitchTrack) -> f64 {
    if track.sample_rate > 0 && track.hop_length > 0 {
        return track.hop_length as f64 / track.sample_rate as f64;
    }
    let d = track.times.windows(2).map(|w| w[1] - w[0]).next();
    d.filter(|d| d.is_finite() && *d > 0.0).unwrap_or(0.01)
}

/// Level (dBFS, at least `floor`) of the 16 kHz `audio` around each frame of
/// the track: RMS over two hops centred on the frame time.
pub fn frame_rms_db(track: &PitchTrack, audio_16k: &[f32], floor: f32) -> Vec<f32> {
    let sr = crate::resample::SAMPLE_RATE as f64;
    let half = (hop_seconds(track) * sr).round().max(1.0) as usize;
    track
        .times
        .iter()
        .map(|&t| {
            if !t.is_finite() || t < 0.0 {
                return floor;
            }
            let c = (t * sr).round() as usize;
            let lo = c.saturating_sub(half).min(audio_16k.len());
            let hi = c.saturating_add(half).min(audio_16k.len());
            rms_db(&audio_16k[lo..hi], floor)
        })
        .collect()
}

/// Splits a pitch track into notes. `audio_16k` (the 16 kHz signal the track
/// was computed from) is optional: with it, silent frames count as unvoiced,
/// silent gaps are never bridged, and velocities follow the loudness.
pub fn segment_notes(
    track: &PitchTrack,
    audio_16k: Option<&[f32]>,
    opts: &NoteOptions,
) -> Vec<Note> {
    let n = frame_count(track);
    if n == 0 {
        return Vec::new();
    }
    let silence_db = finite_or(opts.silence_db, -60.0).min(-1.0);
    let level = audio_16k.map(|a| frame_rms_db(track, a, silence_db - 1.0));
    let silent = |i: usize| level.as_ref().is_some_and(|l| l[i] < silence_db);
    let min_confidence = finite_or(opts.min_confidence, 0.0);
    let pitch: Vec<Option<f32>> = (0..n)
        .map(|i| {
            let conf = track.confidence[i];
            let ok = track.voiced[i]
                && track.times[i].is_finite()
                && (conf.is_nan() || conf >= min_confidence)
                && !silent(i);
            hz_to_midi(track.f0_hz[i]).filter(|_| ok)
        })
        .collect();
    let hop_s = hop_seconds(track);
    let max_gap_frames = if opts.max_gap.is_finite() && opts.max_gap > 0.0 {
        (opts.max_gap / hop_s + 1e-6).floor() as usize
    } else {
        0
    };
    let frames_of = |seconds: f64| {
        let f = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        } / hop_s;
        (f + 1e-6).round() as usize
    };
    let min_duration = if opts.min_duration.is_finite() {
        opts.min_duration
    } else {
        0.0
    };
    let cut = Cut {
        blip: (frames_of(BLIP_SECONDS) / 2) * 2 + 1,
        window: frames_of(opts.stability_window).max(1),
        thr: finite_or(opts.max_cents_jump, 50.0).max(1.0) / 100.0,
        merge: finite_or(opts.merge_cents, 75.0).max(0.0) / 100.0,
        min_len: frames_of(min_duration),
    };
    let mut notes = Vec::new();
    for run in runs(&pitch, max_gap_frames, &silent) {
        let p: Vec<f32> = run.iter().map(|&i| pitch[i].unwrap_or(0.0)).collect();
        for (a, b) in pieces(&p, &cut) {
            let note = make_note(
                &run[a..b],
                track,
                &pitch,
                level.as_deref(),
                hop_s,
                silence_db,
                opts,
            );
            notes.extend(note.filter(|n| n.end - n.start + 1e-9 >= min_duration));
        }
    }
    notes
}

/// Indices of usable frames grouped into runs; short, non-silent gaps of
/// unusable frames are bridged (the gap frames themselves are left out).
fn runs(pitch: &[Option<f32>], max_gap: usize, silent: &dyn Fn(usize) -> bool) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for (i, p) in pitch.iter().enumerate() {
        if p.is_none() {
            continue;
        }
        if let Some(&last) = current.last() {
            let gap = i - last - 1;
            if gap > max_gap || (last + 1..i).any(silent) {
                out.push(std::mem::take(&mut current));
            }
        }
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A note from a set of frame indices (in time order); `None` when the
/// pitch falls outside MIDI's 0-127.
fn make_note(
    frames: &[usize],
    track: &PitchTrack,
    pitch: &[Option<f32>],
    level: Option<&[f32]>,
    hop_s: f64,
    silence_db: f32,
    opts: &NoteOptions,
) -> Option<Note> {
    let (&first, &last) = (frames.first()?, frames.last()?);
    let m = median(frames.iter().filter_map(|&i| pitch[i]))?;
    let midi = m.round();
    if !(0.0..=127.0).contains(&midi) {
        return None;
    }
    let hz = median(frames.iter().map(|&i| track.f0_hz[i]))?;
    let confidence = frames
        .iter()
        .map(|&i| finite_or(track.confidence[i], 0.0).clamp(0.0, 1.0))
        .sum::<f32>()
        / frames.len() as f32;
    let velocity = match level {
        Some(l) => {
            // The median level, as the edge frames' windows reach into the
            // neighbouring notes.
            let typical = median(frames.iter().map(|&i| l[i])).unwrap_or(silence_db);
            let x = ((typical - silence_db) / -silence_db).clamp(0.0, 1.0);
            (1.0 + 126.0 * x).round() as u8
        }
        None => opts.default_velocity.clamp(1, 127),
    };
    let half = hop_s / 2.0;
    Some(Note {
        start: (track.times[first] - half).max(0.0),
        end: track.times[last] + half,
        midi: midi as u8,
        hz,
        cents_off: finite_or(100.0 * (m - midi), 0.0),
        confidence,
        velocity,
    })
}
