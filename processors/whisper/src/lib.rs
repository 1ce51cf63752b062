//! Whisper speech recognition on candle.
//!
//! Loads Whisper from a CTranslate2 directory (`model.bin`, as the registry packages ship
//! it; float32/float16/int8/int16 weights are dequantised to f32) or a Hugging Face
//! safetensors directory, and transcribes 16 kHz mono audio of any length: 30 s windows
//! with seek, timestamp tokens, temperature fallback, beam search, language detection,
//! transcribe/translate, initial prompt, and word timestamps from cross-attention + DTW;
//! forced alignment of text the caller already has ([`Whisper::force_align`]).
//!
//! ```no_run
//! use roar_whisper::{Whisper, TranscribeOptions};
//! let w = Whisper::load("models/whisper".as_ref(), "tiny.en", &candle_core::Device::Cpu)?;
//! let audio = vec![0f32; 16_000];
//! let t = w.transcribe(&audio, &TranscribeOptions::default(), &mut |_| true)?;
//! println!("{}", roar_whisper::to_srt(&t));
//! # Ok::<(), roar_whisper::WhisperError>(())
//! ```

mod align;
mod ct2;
mod decode;
pub mod error;
#[cfg(test)]
mod fidelity;
mod force;
mod format;
#[cfg(feature = "hub")]
mod hub;
mod int8;
mod kernels;
pub mod mel;
mod model;
mod project;
pub mod tokenizer;
mod transcribe;
mod weights;
mod window;
mod words;

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use error::{Result, WhisperError};
pub use force::AlignSpan;
pub use format::{to_srt, to_text, to_verbose_json, to_vtt};
#[cfg(feature = "hub")]
pub use hub::fetch_from_hub;
pub use model::Dims;
pub use weights::{convert_ct2_to_safetensors, ModelHints};

/// Transcribe in the spoken language, or translate into English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    #[default]
    Transcribe,
    Translate,
}

/// How to transcribe; the defaults follow Whisper's reference command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscribeOptions {
    /// Language code (`en`, `de`...); `None` detects it (English-only models: `en`).
    pub language: Option<String>,
    pub task: Task,
    /// Beam width at temperature 0; `None` or 1 decodes greedily.
    pub beam_size: Option<usize>,
    /// Beam search stops after `beam_size * patience` finished hypotheses.
    pub patience: f32,
    /// Tried in order until a window's output passes the thresholds below.
    pub temperatures: Vec<f32>,
    /// Retry hotter when the text compresses better than this (a repetition loop).
    pub compression_ratio_threshold: Option<f32>,
    /// Retry hotter when the mean token log-probability is below this.
    pub logprob_threshold: Option<f32>,
    /// Skip a window as silence when the no-speech probability is above this and the
    /// text is unlikely.
    pub no_speech_threshold: Option<f32>,
    /// Send the previous window's text as the prompt of the next.
    pub condition_on_previous_text: bool,
    /// Text to prime the first window with (names, spelling, style).
    pub initial_prompt: Option<String>,
    /// Time every word (an extra decoder pass per window).
    pub word_timestamps: bool,
    /// Seed for temperature sampling.
    pub seed: u64,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self {
            language: None,
            task: Task::Transcribe,
            beam_size: Some(5),
            patience: 1.0,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            initial_prompt: None,
            word_timestamps: true,
            seed: 0,
        }
    }
}

/// Precision of the decoder's linear layers (the output projection included); the encoder is
/// float32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32, as the reference computes.
    #[default]
    F32,
    /// 8-bit weights in blocks of 32 with one scale each for the decoder, where a step reads
    /// every weight for a handful of rows: on the CPU the crate's own product (float32
    /// activations, on rayon's pool), elsewhere candle's Q8_0 quantized matmul (which
    /// quantises each activation row the same way). The encoder, attention products and norms
    /// stay float32 (on the encoder's 1500-row products candle's 8-bit kernels are slower than
    /// its float32 gemm). About a quarter of the decoder's weight memory.
    Int8,
}

/// One timed word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// Seconds from the start of the audio.
    pub start: f32,
    pub end: f32,
    /// The word as spoken, with its leading space.
    pub word: String,
    /// Mean probability of the word's tokens.
    pub probability: f32,
}

/// One timed stretch of text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: usize,
    /// Mel frame where the window holding this segment started.
    pub seek: usize,
    pub start: f32,
    pub end: f32,
    pub text: String,
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    /// Empty unless word timestamps were asked for.
    pub words: Vec<Word>,
}

/// The whole result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// Language code used (given or detected).
    pub language: String,
    pub task: Task,
    /// Audio length in seconds.
    pub duration: f32,
    pub text: String,
    pub segments: Vec<Segment>,
}

/// A loaded Whisper model with its tokenizer.
pub struct Whisper {
    model: model::Model,
    tokenizer: tokenizer::WhisperTokenizer,
    hints: ModelHints,
    mel: mel::MelExtractor,
    variation: String,
}

impl Whisper {
    /// Loads `dir/variation` (e.g. `models/whisper` + `tiny.en`) onto `device`, float32.
    pub fn load(dir: &Path, variation: &str, device: &Device) -> Result<Self> {
        Self::load_with(dir, variation, device, Precision::F32)
    }

    /// Loads `dir/variation` onto `device` with its linear layers at `precision`.
    pub fn load_with(
        dir: &Path,
        variation: &str,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        if variation.is_empty() || variation.contains(['/', '\\']) || variation.starts_with('.') {
            return Err(WhisperError::InvalidInput(format!(
                "invalid variation name {variation:?}"
            )));
        }
        let vdir = dir.join(variation);
        let tok_path = vdir.join("tokenizer.json");
        let missing = |path: std::path::PathBuf| WhisperError::WeightsMissing {
            path,
            dir: dir.to_path_buf(),
            variation: variation.to_string(),
        };
        if !vdir.is_dir() {
            return Err(missing(vdir.join("model.bin")));
        }
        if !tok_path.is_file() {
            return Err(missing(tok_path));
        }
        let tokenizer = tokenizer::WhisperTokenizer::from_file(&tok_path)?;
        let mut loaded = weights::load_dir(&vdir, device)?;
        loaded.weights.precision = precision;
        let mel = mel::MelExtractor::new(loaded.dims.n_mels);
        let model = model::Model::load(&loaded.weights, loaded.dims)?;
        Ok(Self {
            model,
            tokenizer,
            hints: loaded.hints,
            mel,
            variation: variation.to_string(),
        })
    }

    /// The variation this model was loaded as.
    pub fn variation(&self) -> &str {
        &self.variation
    }

    /// Sizes of the network.
    pub fn dims(&self) -> &Dims {
        &self.model.dims
    }

    /// Whether the model knows more languages than English.
    pub fn is_multilingual(&self) -> bool {
        self.model.dims.n_vocab >= 51865
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &tokenizer::WhisperTokenizer {
        &self.tokenizer
    }

    /// Transcribes `samples_16k` (mono, 16 kHz, about [-1, 1]). `progress` gets the done
    /// fraction after each 30 s window; returning `false` cancels.
    pub fn transcribe(
        &self,
        samples_16k: &[f32],
        opts: &TranscribeOptions,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Transcript> {
        transcribe::run(self, samples_16k, opts, progress)
    }

    /// The most likely spoken language of the first 30 s, with its probability.
    pub fn detect_language(&self, samples_16k: &[f32]) -> Result<(String, f32)> {
        transcribe::detect_language_of(self, samples_16k)
    }
}
