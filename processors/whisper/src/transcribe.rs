//! Long-form transcription: 30 s windows moved by the last complete timestamp (seek),
//! temperature fallback, silence skipping, prompt carry-over, word timing.

use std::io::Write;

use candle_core::{IndexOp, Tensor};

use crate::align::{align_words, merge_punctuation, EncodedWindow};
use crate::decode::{decode_window, log_softmax, WindowParams, WindowResult};
use crate::error::{Result, WhisperError};
use crate::mel::{HOP, N_FRAMES, SAMPLE_RATE};
use crate::{Segment, Task, TranscribeOptions, Transcript, Whisper};

/// Seconds per timestamp token.
const TS_STEP: f32 = 0.02;

/// Mel frames of the audio plus 30 s of silence, as `[n_mels, frames]` rows.
struct Mel {
    data: Vec<f32>,
    frames: usize,
    n_mels: usize,
}

impl Mel {
    /// `[1, n_mels, 3000]` from `seek`, `len` real frames then zeros.
    fn window(&self, seek: usize, len: usize, dev: &candle_core::Device) -> Result<Tensor> {
        let mut w = vec![0f32; self.n_mels * N_FRAMES];
        for m in 0..self.n_mels {
            let src = &self.data[m * self.frames + seek..m * self.frames + seek + len];
            w[m * N_FRAMES..m * N_FRAMES + len].copy_from_slice(src);
        }
        Ok(Tensor::from_vec(w, (1, self.n_mels, N_FRAMES), dev)?)
    }
}

fn check_audio(samples: &[f32]) -> Result<()> {
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

fn compute_mel(w: &Whisper, samples: &[f32]) -> Mel {
    let (data, frames) = w.mel.log_mel(samples, N_FRAMES * HOP);
    Mel {
        data,
        frames,
        n_mels: w.mel.n_mels(),
    }
}

/// Language probabilities from the decoder's first step after `<|startoftranscript|>`.
fn language_probs(w: &Whisper, audio: &Tensor) -> Result<(String, f32)> {
    let sp = &w.tokenizer.specials;
    if !w.is_multilingual() || sp.languages.is_empty() {
        return Ok(("en".into(), 1.0));
    }
    let mut state = w.model.decoder.start(audio, 1)?;
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

/// zlib compression ratio of the text: high for repetition loops.
fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(text.as_bytes());
    let z = enc.finish().map(|v| v.len()).unwrap_or(text.len());
    text.len() as f32 / z.max(1) as f32
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
        return Err(WhisperError::Cancelled);
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
    let mut segments: Vec<Segment> = Vec::new();
    let mut seek = 0;
    let mut sot_seq = vec![sp.sot];
    while seek < content {
        let len = (content - seek).min(N_FRAMES);
        let offset = seek as f32 * HOP as f32 / SAMPLE_RATE as f32;
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
        let prompt = if opts.condition_on_previous_text {
            &all_tokens[prompt_reset..]
        } else {
            &all_tokens[..0]
        };
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
                return Err(WhisperError::Cancelled);
            }
            continue;
        }
        let first_new = segments.len();
        let toks = &res.tokens;
        let is_ts = |t: u32| t >= sp.timestamp_begin;
        let ts_time = |t: u32| (t - sp.timestamp_begin) as f32 * TS_STEP;
        let single_ending =
            toks.len() >= 2 && !is_ts(toks[toks.len() - 2]) && is_ts(toks[toks.len() - 1]);
        let mut cuts: Vec<usize> = (1..toks.len())
            .filter(|&i| is_ts(toks[i - 1]) && is_ts(toks[i]))
            .collect();
        let mut push = |start: f32, end: f32, slice: &[u32]| -> Result<()> {
            let text_toks: Vec<u32> = slice.iter().copied().filter(|&t| t < sp.eot).collect();
            let text = w.tokenizer.decode(&text_toks)?;
            if text.trim().is_empty() {
                return Ok(());
            }
            segments.push(Segment {
                id: segments.len(),
                seek,
                start: start.min(duration),
                end: end.min(duration).max(start.min(duration)),
                text,
                tokens: slice.to_vec(),
                temperature: res.temperature,
                avg_logprob: res.avg_logprob,
                compression_ratio: ratio,
                no_speech_prob: res.no_speech_prob,
                words: Vec::new(),
            });
            Ok(())
        };
        if !cuts.is_empty() {
            if single_ending {
                cuts.push(toks.len());
            }
            let mut last = 0;
            for &cut in &cuts {
                let s = &toks[last..cut];
                push(offset + ts_time(s[0]), offset + ts_time(s[s.len() - 1]), s)?;
                last = cut;
            }
            if single_ending {
                seek += len;
            } else {
                // Resume where the last complete segment ended (2 mel frames per token step).
                let step = (toks[last - 1] - sp.timestamp_begin) as usize * 2;
                // A window must always move forward, whatever the model said.
                seek += if step == 0 { len } else { step.min(len) };
            }
        } else {
            let mut dur = len as f32 * HOP as f32 / SAMPLE_RATE as f32;
            if let Some(&t) = toks.iter().rev().find(|&&t| is_ts(t)) {
                if t != sp.timestamp_begin {
                    dur = ts_time(t);
                }
            }
            push(offset, offset + dur, toks)?;
            seek += len;
        }
        if opts.word_timestamps && segments.len() > first_new {
            // Align the whole window at once (as the reference does), so a later segment's
            // first word is not stretched back over the speech before it.
            let texts: Vec<Vec<u32>> = segments[first_new..]
                .iter()
                .map(|s| s.tokens.iter().copied().filter(|&t| t < sp.eot).collect())
                .collect();
            let all: Vec<u32> = texts.concat();
            let win = EncodedWindow {
                audio: &audio,
                frames: len,
                offset,
            };
            let heads = &w.hints.alignment_heads;
            let mut words =
                align_words(&w.model, &w.tokenizer, heads, &win, &sot_seq, &all)?.into_iter();
            for (seg, text) in segments[first_new..].iter_mut().zip(&texts) {
                let mut taken = 0;
                while taken < text.len() {
                    let Some((word, n)) = words.next() else { break };
                    taken += n;
                    seg.words.push(word);
                }
                merge_punctuation(&mut seg.words);
                fit_segment_to_words(seg, duration);
                for word in &mut seg.words {
                    word.start = word.start.clamp(seg.start, seg.end);
                    word.end = word.end.clamp(word.start, seg.end);
                }
            }
        }
        for seg in &segments[first_new..] {
            // Timestamps stay in the prompt: without them the next window drifts into
            // one long untimed segment.
            all_tokens.extend(seg.tokens.iter().copied().filter(|&t| t != sp.eot));
        }
        if !opts.condition_on_previous_text || res.temperature > 0.5 {
            prompt_reset = all_tokens.len();
        }
        if !progress(seek.min(content) as f32 / content as f32) {
            return Err(WhisperError::Cancelled);
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

/// Decodes a window at each temperature in turn until the result is neither repetitive
/// nor unlikely (or it is silence).
fn decode_with_fallback(
    w: &Whisper,
    audio: &Tensor,
    opts: &TranscribeOptions,
    prompt: &[u32],
    sot_seq: &[u32],
    seed: u64,
) -> Result<(WindowResult, f32)> {
    let mut best: Option<(WindowResult, f32)> = None;
    for &t in &opts.temperatures {
        let p = WindowParams {
            temperature: t,
            beam_size: opts.beam_size,
            patience: opts.patience,
            timestamps: true,
            prompt,
            sot_seq,
            max_initial_timestamp: 1.0,
            seed: opts.seed ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ t.to_bits() as u64,
        };
        let res = decode_window(&w.model, audio, &w.tokenizer.specials, &w.hints, &p)?;
        let ratio = compression_ratio(&w.tokenizer.decode(&res.tokens)?);
        let too_repetitive = opts
            .compression_ratio_threshold
            .is_some_and(|th| ratio > th);
        let too_unlikely = opts
            .logprob_threshold
            .is_some_and(|th| res.avg_logprob < th);
        let silence = opts
            .no_speech_threshold
            .is_some_and(|th| res.no_speech_prob > th);
        let done = silence || (!too_repetitive && !too_unlikely);
        best = Some((res, ratio));
        if done {
            break;
        }
    }
    Ok(best.expect("temperatures is not empty"))
}

/// Takes the segment's bounds from its words (finer than 20 ms timestamp tokens), except
/// where a first or last word runs more than 0.5 s past the timestamp the decoder gave:
/// that is DTW stretching the word over a pause, and the decoder's bound wins.
fn fit_segment_to_words(seg: &mut Segment, duration: f32) {
    let mut durs: Vec<f32> = seg
        .words
        .iter()
        .map(|w| w.end - w.start)
        .filter(|&d| d > 0.0)
        .collect();
    durs.sort_by(f32::total_cmp);
    let median = durs.get(durs.len() / 2).copied().unwrap_or(0.0).min(0.7);
    let (start, end) = (seg.start, seg.end);
    let n = seg.words.len();
    if n == 0 {
        return;
    }
    let first = &mut seg.words[0];
    if start < first.end && start - 0.5 > first.start {
        first.start = (first.end - median).min(start).max(0.0);
    } else {
        seg.start = first.start;
    }
    let last = &mut seg.words[n - 1];
    if end > last.start && end + 0.5 < last.end {
        last.end = (last.start + median).max(end);
    } else {
        seg.end = last.end;
    }
    seg.start = seg.start.min(duration);
    seg.end = seg.end.clamp(seg.start, duration);
}
