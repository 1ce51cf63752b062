//! Long-form transcription: 30 s windows moved by the last complete timestamp (or, with
//! word timestamps, the last word), silence skipping, prompt carry-over, word timing.

use candle_core::{IndexOp, Tensor};

use crate::align::{align_words, EncodedWindow};
use crate::decode::log_softmax;
use crate::error::{Result, WhisperError};
use crate::mel::{HOP, N_FRAMES, SAMPLE_RATE};
use crate::window::{decode_with_fallback, split_window, window_start};
use crate::words::{assign_words, TimedSegment};
use crate::{Segment, Task, TranscribeOptions, Transcript, Whisper, Word};

/// Mel frames of the audio plus 30 s of silence, as `[n_mels, frames]` rows.
pub(crate) struct Mel {
    data: Vec<f32>,
    frames: usize,
    n_mels: usize,
}

impl Mel {
    /// `[1, n_mels, 3000]` from `seek`, `len` real frames then zeros.
    pub(crate) fn window(
        &self,
        seek: usize,
        len: usize,
        dev: &candle_core::Device,
    ) -> Result<Tensor> {
        let mut w = vec![0f32; self.n_mels * N_FRAMES];
        for m in 0..self.n_mels {
            let src = &self.data[m * self.frames + seek..m * self.frames + seek + len];
            w[m * N_FRAMES..m * N_FRAMES + len].copy_from_slice(src);
        }
        Ok(Tensor::from_vec(w, (1, self.n_mels, N_FRAMES), dev)?)
    }
}

pub(crate) fn check_audio(samples: &[f32]) -> Result<()> {
    if samples.is_empty() {
        return Err(WhisperError::InvalidInput("no audio samples".into()));
    }
    if samples.iter().any(|s| !s.is_finite()) {
        return Err(WhisperError::InvalidInput(
            "audio holds NaN or infinite samples".into(),
        ));
    }
    Ok(())
}

pub(crate) fn compute_mel(w: &Whisper, samples: &[f32]) -> Mel {
    let (data, frames) = w.mel.log_mel(samples, N_FRAMES * HOP);
    Mel {
        data,
        frames,
        n_mels: w.mel.n_mels(),
    }
}

/// Language probabilities from the decoder's first step after `<|startoftranscript|>`.
pub(crate) fn language_probs(w: &Whisper, audio: &Tensor) -> Result<(String, f32)> {
    let sp = &w.tokenizer.specials;
    if !w.is_multilingual() || sp.languages.is_empty() {
        return Ok(("en".into(), 1.0));
    }
    let mut state = w.model.decoder.start(audio)?;
    let t = Tensor::new(&[[sp.sot]], audio.device())?;
    let (logits, _) = w.model.decoder.forward(&t, &mut state, &[])?;
    let row: Vec<f32> = logits.i((0, 0))?.to_vec1()?;
    let langs: Vec<f32> = sp.languages.iter().map(|(i, _)| row[*i as usize]).collect();
    let lp = log_softmax(&langs);
    let (best, p) = lp
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, l)| (i, l.exp()))
        .expect("at least one language");
    Ok((sp.languages[best].1.clone(), p))
}

pub(crate) fn detect_language_of(w: &Whisper, samples: &[f32]) -> Result<(String, f32)> {
    check_audio(samples)?;
    let mel = compute_mel(w, samples);
    let len = (samples.len() / HOP).clamp(1, N_FRAMES);
    let dev = w.model.decoder.device();
    let audio = w.model.encoder.forward(&mel.window(0, len, &dev)?)?;
    language_probs(w, &audio)
}

pub(crate) fn run(
    w: &Whisper,
    samples: &[f32],
    opts: &TranscribeOptions,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Transcript> {
    check_audio(samples)?;
    if opts.temperatures.is_empty() || opts.temperatures.iter().any(|t| !(0.0..=2.0).contains(t)) {
        return Err(WhisperError::InvalidInput(
            "temperatures must be non-empty, each in [0, 2]".into(),
        ));
    }
    if opts.beam_size == Some(0) {
        return Err(WhisperError::InvalidInput(
            "beam_size must be at least 1".into(),
        ));
    }
    if !progress(0.0) {
        return Err(WhisperError::Canceled);
    }
    let sp = w.tokenizer.specials.clone();
    let dev = w.model.decoder.device();
    let mel = compute_mel(w, samples);
    let content = samples.len() / HOP;
    let duration = samples.len() as f32 / SAMPLE_RATE as f32;

    let multilingual = w.is_multilingual();
    let mut language = match &opts.language {
        Some(code) if multilingual => {
            if w.tokenizer.language_token(code).is_none() {
                return Err(WhisperError::InvalidInput(format!(
                    "unknown language code {code:?}"
                )));
            }
            Some(code.clone())
        }
        Some(code) if code != "en" => {
            return Err(WhisperError::InvalidInput(format!(
                "model {} only knows English (asked for {code:?})",
                w.variation
            )))
        }
        _ if !multilingual => Some("en".to_string()),
        _ => None,
    };
    if opts.task == Task::Translate && !multilingual {
        return Err(WhisperError::InvalidInput(
            "English-only models cannot translate".into(),
        ));
    }

    let mut all_tokens: Vec<u32> = match &opts.initial_prompt {
        Some(p) if !p.trim().is_empty() => w.tokenizer.encode(&format!(" {}", p.trim()))?,
        _ => Vec::new(),
    };
    let mut prompt_reset = 0;
    // End of the last speech heard (seconds), for the word-timing fixes at pauses.
    let mut last_speech = 0.0f64;
    let mut segments: Vec<Segment> = Vec::new();
    let mut seek = 0;
    let mut sot_seq = vec![sp.sot];
    while seek < content {
        let len = (content - seek).min(N_FRAMES);
        let seek_before = seek;
        let audio = w.model.encoder.forward(&mel.window(seek, len, &dev)?)?;
        if language.is_none() {
            language = Some(language_probs(w, &audio)?.0);
        }
        if sot_seq.len() == 1 && multilingual {
            let code = language.as_deref().unwrap_or("en");
            sot_seq.push(w.tokenizer.language_token(code).unwrap_or(sp.sot + 1));
            sot_seq.push(if opts.task == Task::Translate {
                sp.translate
            } else {
                sp.transcribe
            });
        }
        // Without conditioning the prompt is reset after every window, so only an initial
        // prompt reaches the first.
        let prompt = &all_tokens[prompt_reset..];
        let (res, ratio) = decode_with_fallback(w, &audio, opts, prompt, &sot_seq, seek as u64)?;

        let silent = opts.no_speech_threshold.is_some_and(|th| {
            res.no_speech_prob > th
                && opts
                    .logprob_threshold
                    .is_none_or(|lt| res.avg_logprob <= lt)
        });
        if silent {
            seek += len;
            if !progress(seek.min(content) as f32 / content as f32) {
                return Err(WhisperError::Canceled);
            }
            continue;
        }
        let toks = &res.tokens;
        let (pieces, next_seek, single_ending) = split_window(toks, sp.timestamp_begin, seek, len);
        let mut timed: Vec<TimedSegment> = pieces
            .iter()
            .map(|p| TimedSegment {
                start: p.start,
                end: p.end,
                text_tokens: p.tokens.iter().filter(|&&t| t < sp.eot).count(),
                words: Vec::new(),
            })
            .collect();
        seek = next_seek;
        if opts.word_timestamps {
            // The whole window at once (as the reference does), so a later segment's first
            // word is not stretched back over the speech before it.
            let text: Vec<u32> = pieces
                .iter()
                .flat_map(|p| p.tokens.iter().copied().filter(|&t| t < sp.eot))
                .collect();
            let win = EncodedWindow {
                audio: &audio,
                frames: len,
            };
            let code = language.as_deref().unwrap_or("en");
            let heads = &w.hints.alignment_heads;
            let al = align_words(&w.model, &w.tokenizer, heads, &win, &sot_seq, &text, code)?;
            // The reference offsets words by `seek / 100` and segments by `seek * 0.01`.
            assign_words(&al, seek_before as f64 / 100.0, &mut timed, last_speech);
            // The next window starts where the last word ended, unless the decoder said the
            // speech ended in this window.
            let last_end = timed
                .iter()
                .rev()
                .find_map(|s| s.words.last().map(|w| w.end))
                .or(timed.last().map(|s| s.end));
            if let Some(end) = last_end {
                last_speech = end;
                let at = (end * 100.0).round_ties_even() as usize;
                // (The reference would loop forever on a word ending within 5 ms of the
                // window's start; roar moves on.)
                if !single_ending && end > window_start(seek_before) && at > seek_before {
                    seek = at;
                }
            }
        }
        for (piece, t) in pieces.iter().zip(timed) {
            let text_toks: Vec<u32> = piece
                .tokens
                .iter()
                .copied()
                .filter(|&t| t < sp.eot)
                .collect();
            let text = w.tokenizer.decode(&text_toks)?;
            if t.start == t.end || text.trim().is_empty() {
                continue;
            }
            // Timestamps stay in the prompt: without them the next window drifts into
            // one long untimed segment.
            all_tokens.extend_from_slice(piece.tokens);
            let start = (t.start as f32).min(duration);
            segments.push(Segment {
                id: segments.len(),
                seek: seek_before,
                start,
                end: (t.end as f32).clamp(start, duration),
                text,
                tokens: piece.tokens.to_vec(),
                temperature: res.temperature,
                avg_logprob: res.avg_logprob,
                compression_ratio: ratio,
                no_speech_prob: res.no_speech_prob,
                words: t
                    .words
                    .into_iter()
                    .map(|w| Word {
                        start: w.start as f32,
                        end: w.end as f32,
                        word: w.word,
                        probability: w.probability,
                    })
                    .collect(),
            });
        }
        if !opts.condition_on_previous_text || res.temperature > 0.5 {
            prompt_reset = all_tokens.len();
        }
        if !progress(seek.min(content) as f32 / content as f32) {
            return Err(WhisperError::Canceled);
        }
    }
    let text = segments.iter().map(|s| s.text.as_str()).collect::<String>();
    Ok(Transcript {
        language: language.unwrap_or_else(|| "en".into()),
        task: opts.task,
        duration,
        text,
        segments,
    })
}
