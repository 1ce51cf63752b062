//! Tests of `roar_crepe::analysis` on signals and pitch tracks made here:
//! note segmentation, the MIDI writer, key, tempo, the f0 exports, and one
//! run of the real CREPE tiny model through the note segmenter.

#[path = "../common/mod.rs"]
mod common;

mod crepe_melody;
mod f0;
mod key;
mod midi;
mod notes;
mod synth;
mod tempo;
