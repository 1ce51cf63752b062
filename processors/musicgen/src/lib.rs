//! `roar-musicgen` generates music with MusicGen (Meta's text-to-music model; the `small`,
//! `medium`, `large` and `melody` releases) on candle, numerically like the reference
//! (Hugging Face transformers' `MusicgenForConditionalGeneration` and
//! `MusicgenMelodyForConditionalGeneration`). A T5 encoder reads the prompt; the MusicGen
//! decoder predicts four EnCodec codebooks in the delay pattern, with classifier-free guidance
//! and top-k/top-p sampling from a seeded generator; EnCodec renders the codes as 32 kHz audio.
//! A song's tail can be continued (EnCodec encodes it into the prompt) and the melody models
//! follow the chroma of a melody. [`MusicGen::load`] reads the Hugging Face layout;
//! [`MusicGen::generate`] reports progress per step, stops between steps when asked, and keeps
//! memory bounded by its window whatever the duration.

pub mod chroma;
pub mod config;
pub mod decoder;
pub mod delay;
pub mod encodec;
mod error;
pub mod generate;
#[cfg(feature = "hub")]
pub mod hub;
pub mod kernels;
pub mod model;
pub mod sampling;
pub mod t5;
pub mod tokenizer;
pub mod weights;

pub use candle_core::Device;
pub use config::MusicgenConfig;
pub use error::{MusicgenError, Result};
pub use generate::{Generated, Progress, Request, Stage};
pub use model::MusicGen;
pub use sampling::Sampling;
