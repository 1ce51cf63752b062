//! Musical analysis on top of a pitch track and the audio it came from: note
//! segmentation ([`segment_notes`]) and a Standard MIDI File of the notes
//! ([`midi_file`]), the key ([`estimate_key`]), the tempo and beats
//! ([`estimate_tempo`]), and the f0 curve as CSV / JSON ([`f0_csv`],
//! [`f0_json`]).
//!
//! Everything here is pure and blocking, and robust to empty, silent or very
//! short input: it then returns no notes or `None`, never panics, and never
//! puts a NaN or infinity in its output.

mod f0;
mod key;
mod midi;
mod notes;
mod pieces;
mod spectrum;
mod stats;
mod tempo;

pub use f0::{f0_csv, f0_json, hz_to_midi};
pub use key::{estimate_key, Key, KEY_NAMES};
pub use midi::{midi_file, TICKS_PER_QUARTER};
pub use notes::{frame_rms_db, segment_notes, Note, NoteOptions};
pub use tempo::{estimate_tempo, Tempo};
