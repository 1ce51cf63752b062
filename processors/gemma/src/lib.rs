//! Gemma models on candle and the lyrics logic built on them: the Gemma 3n text decoder and
//! audio encoder from the Hugging Face safetensors layout (`google/gemma-3n-E2B-it`, `E4B`),
//! the Gemma 3 text decoder from GGUF (the `gemma3-270m` variation), their tokenizers, greedy
//! decoding, and [`lyrics`]: cleaning a transcript into lyric lines and sections, timing lyric
//! words from a recogniser's timed words, and the lyric file formats.

pub mod error;
pub mod gemma3;
pub mod gemma3n;
pub mod generate;
pub mod hub;
pub mod layers;
pub mod lyrics;
pub mod spm;

pub use error::{GemmaError, Result};
