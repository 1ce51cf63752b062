//! The `gemma3n` model on the runtime: lyrics. Whisper (run here, on the job's audio: the
//! upload or, in a pipeline, the vocals stem) hears the words and their times; the lyric text
//! comes from Gemma 3 270M cleaning Whisper's transcript into lines and sections (variation
//! `gemma3-270m`) or from Gemma 3n listening to the audio (`e2b`, `e4b`), and roar-gemma aligns
//! its words to Whisper's timed words. Lyrics the user gives (`params.lyrics`) are timed by
//! Whisper's forced alignment of those very words to the audio. Outputs: `lyrics.txt`,
//! `lyrics.json`, `lyrics.lrc` (enhanced, word times), `lyrics.srt`, `lyrics.vtt`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roar_crepe::Device;
use roar_gemma::gemma3::{Gemma3, Precision};
use roar_gemma::gemma3n::transcribe::Transcriber;
use roar_gemma::lyrics::{self, align, clean, format, spans, LyricSheet, SheetError, TimedWord};
use roar_gemma::spm::SpmTokenizer;
use roar_gemma::GemmaError;
use roar_whisper::{AlignSpan, TranscribeOptions, Whisper, WhisperError};
use serde_json::Value;

use crate::runtime::{Input, Loaded, Model, ModelError, OutputFile, RunContext};

/// Recorded in manifests and liveness announcements.
pub const VERSION: &str = "gemma-lyrics-candle-1";

/// The text model's variation (a GGUF file) and the audio models' (Hugging Face directories).
const CLEANER: &str = "gemma3-270m";
const LISTENERS: [&str; 2] = ["e2b", "e4b"];
/// Whisper variations this worker can time words with, the preferred first.
const WHISPERS: [&str; 2] = ["base", "tiny.en"];

/// What writes the lyric text for a variation.
enum Writer {
    Cleaner(Box<(Gemma3, SpmTokenizer)>),
    Listener(Box<Transcriber>),
}

/// Lyrics from audio; models loaded on first use and kept.
pub struct Lyrics {
    gemma_dir: PathBuf,
    device: Device,
    whisper_dir: PathBuf,
    writers: Loaded<Writer>,
    /// The Whisper variations present to time the words with.
    recognisers: Loaded<Whisper>,
}

/// Why the worker cannot start: it needs a text or audio Gemma and a Whisper.
#[derive(Debug, thiserror::Error)]
pub enum LyricsSetupError {
    #[error(
        "no Gemma weights under {0} (gemma3-270m/model.gguf: scripts/gemma/fetch-weights.sh; \
         e2b/config.json: roar models fetch gemma3n e2b)"
    )]
    NoGemma(PathBuf),
    #[error("no Whisper weights under {0} to time the words (scripts/whisper/fetch-weights.sh)")]
    NoWhisper(PathBuf),
}

impl Lyrics {
    /// Serves the variations present under `models_dir/gemma/` (`gemma3-270m/model.gguf`,
    /// `e2b/config.json`, `e4b/config.json`), timing words with the Whisper variations under
    /// `models_dir/whisper/`. Nothing is loaded until a job needs it.
    pub fn new(models_dir: &Path) -> Result<Self, LyricsSetupError> {
        let gemma_dir = models_dir.join("gemma");
        let whisper_dir = models_dir.join("whisper");
        let known = [CLEANER, LISTENERS[0], LISTENERS[1]];
        let Some(writers) = Loaded::present("gemma3n", &gemma_dir, &known, |d| {
            if d.ends_with(CLEANER) {
                d.join("model.gguf").is_file()
            } else {
                d.join("config.json").is_file() && d.join("tokenizer.json").is_file()
            }
        }) else {
            return Err(LyricsSetupError::NoGemma(gemma_dir));
        };
        let Some(recognisers) = Loaded::present("whisper", &whisper_dir, &WHISPERS, |d| {
            d.join("tokenizer.json").is_file()
        }) else {
            return Err(LyricsSetupError::NoWhisper(whisper_dir));
        };
        Ok(Self {
            gemma_dir,
            device: Device::Cpu,
            whisper_dir,
            writers,
            recognisers,
        })
    }

    /// Runs the model on `device` (from `processor.device`) instead of the CPU.
    pub fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    fn writer(&self, variation: &str) -> Result<Arc<Writer>, ModelError> {
        self.writers.get(variation, || {
            let dir = self.gemma_dir.join(variation);
            Ok(if variation == CLEANER {
                // The dequantised path: the quantised one is not proven against the reference.
                let (m, t) = Gemma3::load(
                    &dir.join("model.gguf"),
                    Precision::Dequantized,
                    &self.device,
                )
                .map_err(gemma_error)?;
                Writer::Cleaner(Box::new((m, t)))
            } else {
                Writer::Listener(Box::new(
                    Transcriber::load(&dir, &self.device).map_err(gemma_error)?,
                ))
            })
        })
    }

    /// The lyric text by the variation's model: Gemma 3 cleans what Whisper heard, Gemma 3n
    /// listens to the audio itself.
    fn write(
        &self,
        variation: &str,
        audio: &[f32],
        heard: &[TimedWord],
        ctx: &mut RunContext,
    ) -> Result<LyricSheet, ModelError> {
        let writer = self.writer(variation)?;
        let t = match &*writer {
            Writer::Cleaner(m) => return clean_with(&m.0, &m.1, heard, ctx),
            Writer::Listener(t) => t,
        };
        let text = t
            .transcribe(audio, &mut |done| {
                ctx.progress(50.0 + 45.0 * done, "listening for lyrics");
                !ctx.stopped()
            })
            .map_err(gemma_error)?;
        match LyricSheet::parse(&text) {
            Ok(s) => Ok(s),
            // Nothing sung (an instrumental): empty lyrics, not a failure.
            Err(SheetError::NoWords) => Ok(LyricSheet::default()),
            Err(e) => Err(ModelError::permanent("lyrics_error", e.to_string())),
        }
    }

    fn recogniser(&self, variation: &str) -> Result<Arc<Whisper>, ModelError> {
        self.recognisers.get(variation, || {
            Whisper::load(&self.whisper_dir, variation, &self.device).map_err(whisper_error)
        })
    }
}

fn gemma_error(e: GemmaError) -> ModelError {
    match e {
        GemmaError::Canceled => ModelError::Canceled,
        GemmaError::WeightsMissing { .. } => {
            ModelError::permanent("weights_missing", e.to_string())
        }
        GemmaError::InvalidModel(_) | GemmaError::Tokenizer(_) => {
            ModelError::permanent("invalid_weights", e.to_string())
        }
        GemmaError::InvalidInput(_) => ModelError::permanent("invalid_input", e.to_string()),
        e if e.is_retryable() => ModelError::retryable("inference_error", e.to_string()),
        e => ModelError::permanent("inference_error", e.to_string()),
    }
}

fn whisper_error(e: WhisperError) -> ModelError {
    match e {
        WhisperError::Canceled => ModelError::Canceled,
        WhisperError::WeightsMissing { .. } => {
            ModelError::permanent("weights_missing", e.to_string())
        }
        WhisperError::InvalidInput(_) => ModelError::permanent("invalid_params", e.to_string()),
        e if e.is_retryable() => ModelError::retryable("inference_error", e.to_string()),
        e => ModelError::permanent("inference_error", e.to_string()),
    }
}

/// A job's parameters (already checked against the catalogue).
#[derive(Debug, PartialEq)]
struct Params {
    /// The user's own lyrics: aligned as given, no model writes text.
    lyrics: Option<LyricSheet>,
    whisper: String,
    language: Option<String>,
}

fn params(p: &Value) -> Result<Params, ModelError> {
    let text = |k: &str| p.get(k).and_then(Value::as_str);
    let lyrics = match text("lyrics") {
        None => None,
        Some(t) => Some(LyricSheet::parse(t).map_err(|e: SheetError| {
            ModelError::permanent("invalid_params", format!("params.lyrics: {e}"))
        })?),
    };
    Ok(Params {
        lyrics,
        whisper: text("whisper").unwrap_or(WHISPERS[0]).to_string(),
        language: text("language").map(str::to_string),
    })
}

/// Whisper's timed words, in order.
fn heard_words(t: &roar_whisper::Transcript) -> Vec<TimedWord> {
    timed_words(t.segments.iter().flat_map(|s| &s.words))
}

fn timed_words<'a>(words: impl Iterator<Item = &'a roar_whisper::Word>) -> Vec<TimedWord> {
    words
        .map(|w| TimedWord {
            word: w.word.clone(),
            start: w.start,
            end: w.end,
            probability: w.probability,
        })
        .collect()
}

/// The user's lyrics timed by Whisper's forced alignment of their own words (cross-attention
/// over the given tokens, aligned to the audio by DTW), in spans of whole lines planned from
/// `rough` (the lyrics aligned to the words Whisper heard). Lyrics Whisper cannot take in one
/// window (more tokens than its decoder holds) keep the rough times.
fn force_aligned(
    whisper: &Whisper,
    audio: &[f32],
    sheet: &LyricSheet,
    rough: lyrics::Lyrics,
    language: &str,
    ctx: &mut RunContext,
) -> Result<lyrics::Lyrics, ModelError> {
    let duration = audio.len() as f32 / 16_000.0;
    let planned: Vec<AlignSpan> = spans::plan(&rough, duration)
        .into_iter()
        .map(|s| AlignSpan {
            start: s.start,
            end: s.end,
            text: s.text,
        })
        .collect();
    let forced = whisper.force_align(audio, &planned, Some(language), &mut |done| {
        ctx.progress(50.0 + 45.0 * done, "aligning the given lyrics");
        !ctx.stopped()
    });
    match forced {
        Ok(words) => align::align(sheet, &timed_words(words.iter()), duration)
            .map_err(|e| ModelError::permanent("lyrics_error", e.to_string())),
        Err(WhisperError::InvalidInput(reason)) => {
            tracing::warn!(%reason, "given lyrics keep the times of the words Whisper heard");
            Ok(rough)
        }
        Err(e) => Err(whisper_error(e)),
    }
}

/// Gemma 3 continues each cleaning prompt greedily until a stop marker or its budget.
fn clean_with(
    model: &Gemma3,
    tok: &SpmTokenizer,
    heard: &[TimedWord],
    ctx: &mut RunContext,
) -> Result<LyricSheet, ModelError> {
    let stop: Vec<u32> = ["<eos>", "<end_of_turn>"]
        .iter()
        .filter_map(|p| tok.token_id(p))
        .collect();
    let total = heard.len().max(1) as f32;
    let mut done_words = 0usize;
    let mut generate = |prompt: &str, budget: usize| -> Result<String, ModelError> {
        ctx.checkpoint()?;
        let ids = tok.encode(prompt, true);
        let mut out: Vec<u32> = Vec::new();
        let mut canceled = false;
        roar_gemma::generate::greedy(model, &ids, budget, &stop, &mut |id| {
            out.push(id);
            if ctx.stopped() {
                canceled = true;
                return false;
            }
            // The answer ends at the next example's marker: stop there, not at the budget.
            let text = tok.decode(&out, true);
            !clean::STOP_MARKERS.iter().any(|m| text.contains(m))
        })
        .map_err(gemma_error)?;
        if canceled {
            return Err(ModelError::Canceled);
        }
        // The budget is three tokens a word: count a chunk's words from it.
        done_words += budget.saturating_sub(16) / 3;
        ctx.progress(
            50.0 + 45.0 * (done_words as f32 / total).min(1.0),
            "writing lyrics",
        );
        Ok(tok.decode(&out, true))
    };
    clean::clean_transcript(heard, &clean::CleanOptions::default(), &mut generate)
}

/// The five lyric files of timed lyrics.
fn outputs(l: &lyrics::Lyrics) -> Result<Vec<OutputFile>, ModelError> {
    Ok(vec![
        OutputFile::text(
            "lyrics.txt",
            "lyrics",
            "text/plain; charset=utf-8",
            format::to_text(l),
        ),
        OutputFile::json("lyrics.json", "lyrics_json", &format::to_json(l))?,
        OutputFile::text(
            "lyrics.lrc",
            "lrc",
            "text/plain; charset=utf-8",
            format::to_lrc(l),
        ),
        OutputFile::text(
            "lyrics.srt",
            "subtitles",
            "application/x-subrip",
            format::to_srt(l),
        ),
        OutputFile::text("lyrics.vtt", "subtitles", "text/vtt", format::to_vtt(l)),
    ])
}

impl Model for Lyrics {
    fn name(&self) -> &'static str {
        "gemma3n"
    }

    fn version(&self) -> String {
        VERSION.into()
    }

    fn variations(&self) -> Vec<String> {
        self.writers.variations().to_vec()
    }
    fn device(&self) -> String {
        crate::device::label(&self.device)
    }

    fn run(&self, input: &Input, ctx: &mut RunContext) -> Result<Vec<OutputFile>, ModelError> {
        let p = params(&input.params)?;
        self.writers.serves(&input.variation)?;
        let whisper = self.recogniser(&p.whisper)?;
        ctx.progress(1.0, "resampling");
        let audio = crate::whisper::speech_audio(input)?;
        let duration = audio.len() as f32 / 16_000.0;
        ctx.checkpoint()?;
        let opts = TranscribeOptions {
            language: p.language.clone(),
            word_timestamps: true,
            ..TranscribeOptions::default()
        };
        let transcript = {
            let ctx = &mut *ctx;
            whisper
                .transcribe(&audio, &opts, &mut |done| {
                    ctx.progress(2.0 + 48.0 * done, "hearing the words");
                    !ctx.stopped()
                })
                .map_err(whisper_error)?
        };
        let heard = heard_words(&transcript);
        ctx.checkpoint()?;
        let align_heard = |sheet: &LyricSheet| {
            align::align(sheet, &heard, duration)
                .map_err(|e| ModelError::permanent("lyrics_error", e.to_string()))
        };
        // The user's own lyrics need no model to write them (the variation is not loaded):
        // Whisper aligns their words to the audio itself.
        if let Some(sheet) = p.lyrics {
            let rough = align_heard(&sheet)?;
            let timed = force_aligned(&whisper, &audio, &sheet, rough, &transcript.language, ctx)?;
            return outputs(&timed);
        }
        let sheet = self.write(&input.variation, &audio, &heard, ctx)?;
        ctx.progress(96.0, "aligning");
        outputs(&align_heard(&sheet)?)
    }
}

#[cfg(test)]
#[path = "gemma3n_tests.rs"]
mod tests;
