//! Forced alignment: times the words of a text the caller already has (a lyric sheet, a
//! script) instead of one the decoder wrote. Each span of audio (at most one 30 s window) is
//! encoded once; the decoder reads the span's text tokens in a single pass and the alignment
//! heads' cross-attention over them is aligned to the frames by dynamic time warping, as
//! openai-whisper's `find_alignment` does for a window's words (then the same sentence-end
//! cut and punctuation merge). Nothing is decoded, so every given word gets a time even
//! where the model would have heard something else.

use crate::align::{align_words, EncodedWindow};
use crate::error::{Result, WhisperError};
use crate::mel::{HOP, N_FRAMES, SAMPLE_RATE};
use crate::transcribe::{check_audio, compute_mel, language_probs};
use crate::{Whisper, Word};

/// A stretch of the audio and the text sung or spoken in it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignSpan {
    /// Seconds from the start of the audio.
    pub start: f32,
    /// At most 30 s after `start`; clamped to the end of the audio.
    pub end: f32,
    /// Everything said in the span, in order (whitespace, line breaks included, count as
    /// single spaces).
    pub text: String,
}

/// The span's first and past-the-end mel frames (10 ms each) within `content` frames.
fn frames_of(span: &AlignSpan, content: usize) -> Result<(usize, usize)> {
    let bad = |why: &str| {
        Err(WhisperError::InvalidInput(format!(
            "alignment span {:.2}..{:.2} s: {why}",
            span.start, span.end
        )))
    };
    if !(span.start.is_finite() && span.end.is_finite()) || span.start < 0.0 {
        return bad("times must be finite and not negative");
    }
    if span.end <= span.start {
        return bad("the end must come after the start");
    }
    let per_second = (SAMPLE_RATE / HOP) as f32;
    if span.end - span.start > N_FRAMES as f32 / per_second + 0.005 {
        return bad("longer than Whisper's 30 s window");
    }
    let seek = (span.start * per_second).round() as usize;
    if seek >= content {
        return bad("starts after the end of the audio");
    }
    let stop = ((span.end * per_second).round() as usize).min(content);
    let len = stop.saturating_sub(seek).clamp(1, N_FRAMES);
    Ok((seek, len))
}

impl Whisper {
    /// Forced alignment of known text: every word of each span's text, timed within that
    /// span (times from the start of the audio), in span order. A span with no words gives
    /// none. `language` as in transcription (`None` detects it from the first span;
    /// English-only models take `en` only). `progress` gets the done fraction after each
    /// span; returning `false` cancels.
    ///
    /// Spans should cut the audio where nothing is said: a word outside its span's audio is
    /// squeezed to the span's edge.
    pub fn force_align(
        &self,
        samples_16k: &[f32],
        spans: &[AlignSpan],
        language: Option<&str>,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Vec<Word>> {
        check_audio(samples_16k)?;
        let multilingual = self.is_multilingual();
        if let Some(code) = language {
            let known = if multilingual {
                self.tokenizer.language_token(code).is_some()
            } else {
                code == "en"
            };
            if !known {
                return Err(WhisperError::InvalidInput(format!(
                    "model {} does not know language {code:?}",
                    self.variation
                )));
            }
        }
        let content = samples_16k.len() / HOP;
        let planned = spans
            .iter()
            .map(|s| frames_of(s, content.max(1)))
            .collect::<Result<Vec<_>>>()?;
        let sp = &self.tokenizer.specials;
        // Start-of-transcript, language, task, no-timestamps, the text, end of text.
        let budget = self.model.dims.n_text_ctx.saturating_sub(5);
        let texts = spans
            .iter()
            .map(|s| {
                let text = s.text.split_whitespace().collect::<Vec<_>>().join(" ");
                if text.is_empty() {
                    return Ok(Vec::new());
                }
                let tokens = self.tokenizer.encode(&format!(" {text}"))?;
                if tokens.len() > budget {
                    return Err(WhisperError::InvalidInput(format!(
                        "alignment span {:.2}..{:.2} s holds {} text tokens, more than the \
                         decoder's {budget}: split it",
                        s.start,
                        s.end,
                        tokens.len()
                    )));
                }
                Ok(tokens)
            })
            .collect::<Result<Vec<_>>>()?;
        if !progress(0.0) {
            return Err(WhisperError::Canceled);
        }
        let mel = compute_mel(self, samples_16k);
        let dev = self.model.decoder.device();
        let mut code = language.map(str::to_string);
        let mut words = Vec::new();
        for (i, ((seek, len), tokens)) in planned.into_iter().zip(&texts).enumerate() {
            if !tokens.is_empty() {
                let audio = self.model.encoder.forward(&mel.window(seek, len, &dev)?)?;
                let lang = match &code {
                    Some(c) => c.clone(),
                    None if multilingual => language_probs(self, &audio)?.0,
                    None => "en".to_string(),
                };
                code = Some(lang.clone());
                let mut sot_seq = vec![sp.sot];
                if multilingual {
                    sot_seq.push(self.tokenizer.language_token(&lang).unwrap_or(sp.sot + 1));
                    sot_seq.push(sp.transcribe);
                }
                let win = EncodedWindow {
                    audio: &audio,
                    frames: len,
                };
                let heads = &self.hints.alignment_heads;
                let al = align_words(
                    &self.model,
                    &self.tokenizer,
                    heads,
                    &win,
                    &sot_seq,
                    tokens,
                    &lang,
                )?;
                let offset = seek as f64 / (SAMPLE_RATE / HOP) as f64;
                words.extend(
                    al.words
                        .into_iter()
                        .filter(|w| !w.word.is_empty())
                        .map(|w| Word {
                            start: (offset + w.start) as f32,
                            end: (offset + w.end) as f32,
                            word: w.word,
                            probability: w.probability,
                        }),
                );
            }
            if !progress((i + 1) as f32 / spans.len() as f32) {
                return Err(WhisperError::Canceled);
            }
        }
        Ok(words)
    }
}
