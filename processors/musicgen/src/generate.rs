//! Generation: text (and a melody, or a song to continue) in, audio out. The decoder runs in
//! windows of at most `window_seconds` (the 30 s the models were trained on); a longer piece
//! slides the window by `stride_seconds`, re-reading the last `window − stride` seconds of
//! codes as its prompt (audiocraft's extension), so memory follows the window, not the piece.
//! Progress is reported after every sampled position and the caller can stop between any two.

use crate::decoder::Session;
use crate::delay::DelayPattern;
use crate::model::{Conditioning, MusicGen};
use crate::sampling::{Sampler, Sampling};
use crate::{MusicgenError, Result};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The description; `None` or blank generates unconditionally.
    pub prompt: Option<String>,
    /// Seconds of new audio (after the continued song, if any).
    pub duration_seconds: f32,
    pub sampling: Sampling,
    /// Mono audio at the model's rate to continue: its codes are the prompt.
    pub continuation: Option<Vec<f32>>,
    /// Mono audio at the model's rate whose melody to follow (melody models only).
    pub melody: Option<Vec<f32>>,
    /// The decoder's window in seconds.
    pub window_seconds: f32,
    /// How far the window moves when the piece is longer than it.
    pub stride_seconds: f32,
    /// Longest duration accepted (the worker's configured limit).
    pub max_duration_seconds: f32,
    /// Seconds of codes EnCodec renders at once.
    pub decode_chunk_seconds: f32,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            prompt: None,
            duration_seconds: 10.0,
            sampling: Sampling::default(),
            continuation: None,
            melody: None,
            window_seconds: 30.0,
            stride_seconds: 18.0,
            max_duration_seconds: 300.0,
            decode_chunk_seconds: 10.0,
        }
    }
}

/// Where a generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Encoding the song to continue.
    EncodingPrompt,
    /// Sampling codes: `done` of `total` positions over all windows.
    Generating,
    /// Rendering codes to audio: `done` of `total` chunks.
    Decoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// The result: audio of every frame, the prompt's re-rendered first.
#[derive(Debug, Clone)]
pub struct Generated {
    pub audio: Vec<f32>,
    pub sample_rate: u32,
    /// `codebooks × frames`.
    pub codes: Vec<Vec<u32>>,
    /// Frames at the start that are the continued song's (0 without continuation).
    pub prompt_frames: usize,
    /// Samples per frame.
    pub hop: usize,
}

impl Generated {
    /// The audio after the continued part.
    pub fn new_audio(&self) -> &[f32] {
        &self.audio[(self.prompt_frames * self.hop).min(self.audio.len())..]
    }
}

fn seconds(what: &str, v: f32, min: f32, max: f32) -> Result<()> {
    if !(v.is_finite() && v >= min && v <= max) {
        return Err(MusicgenError::params(format!(
            "{what} {v} must be between {min} and {max} seconds"
        )));
    }
    Ok(())
}

impl Request {
    /// Checks every parameter, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        seconds(
            "max_duration_seconds",
            self.max_duration_seconds,
            0.02,
            3600.0,
        )?;
        seconds(
            "duration_seconds",
            self.duration_seconds,
            0.02,
            self.max_duration_seconds,
        )?;
        seconds("window_seconds", self.window_seconds, 1.0, 60.0)?;
        seconds(
            "stride_seconds",
            self.stride_seconds,
            0.5,
            self.window_seconds - 0.5,
        )?;
        seconds(
            "decode_chunk_seconds",
            self.decode_chunk_seconds,
            0.1,
            600.0,
        )?;
        for (what, audio) in [
            ("continuation", &self.continuation),
            ("melody", &self.melody),
        ] {
            if let Some(a) = audio {
                if a.is_empty() {
                    return Err(MusicgenError::params(format!("{what} audio is empty")));
                }
                if let Some(i) = a.iter().position(|v| !v.is_finite()) {
                    return Err(MusicgenError::params(format!(
                        "{what} audio has a non-finite sample at {i}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// One decoder window: `prompt` frames given, `frames` in all.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    prompt: usize,
    frames: usize,
}

/// The windows of a piece of `prompt + new` frames: each keeps at most `context` frames of
/// what came before and holds at most `window` frames.
fn plan(prompt: usize, new: usize, window: usize, context: usize) -> Vec<Window> {
    let mut out = Vec::new();
    let mut have = prompt.min(context);
    let mut left = new;
    while left > 0 {
        let frames = (have + left).min(window);
        out.push(Window {
            prompt: have,
            frames,
        });
        left -= frames - have;
        have = frames.min(context);
    }
    out
}

impl MusicGen {
    /// Generates `req`, calling `progress` after every step; `progress` returning false stops
    /// the run with [`MusicgenError::Canceled`].
    pub fn generate(
        &self,
        req: &Request,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Generated> {
        req.validate()?;
        let text = match req.prompt.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => Some(self.tokenize(p)?),
            _ => None,
        };
        self.generate_ids(text.as_deref(), req, progress)
    }

    /// [`MusicGen::generate`] from the prompt's token ids (`req.prompt` is not read): for
    /// callers that tokenize themselves, and models built without a tokenizer (benchmarks).
    pub fn generate_ids(
        &self,
        text: Option<&[u32]>,
        req: &Request,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Generated> {
        req.validate()?;
        if req.melody.is_some() && !self.is_melody() {
            return Err(MusicgenError::params("a melody needs the melody variation"));
        }
        let fr = self.frame_rate() as f32;
        let k = self.cfg.decoder.num_codebooks;
        let vocab = self.cfg.decoder.vocab_size;
        let pad = self.cfg.decoder.pad_token();
        let text = text.filter(|t| !t.is_empty());
        let chroma = match (&req.melody, &self.chroma) {
            (Some(m), Some(x)) => Some(x.chroma(m)?),
            _ => None,
        };
        let window = ((req.window_seconds * fr).round() as usize).max(2);
        let context = window - ((req.stride_seconds * fr).round() as usize).clamp(1, window - 1);
        let mut codes: Vec<Vec<u32>> = vec![Vec::new(); k];
        if let Some(audio) = &req.continuation {
            if !progress(Progress {
                stage: Stage::EncodingPrompt,
                done: 0,
                total: 1,
            }) {
                return Err(MusicgenError::Canceled);
            }
            // A continued song longer than the context only contributes its end, and only
            // that end is encoded: EnCodec's activations (64+ channels at 32 kHz) would
            // otherwise grow with the song.
            let hop = self.cfg.audio_encoder.hop_length();
            codes = self
                .encodec
                .encode(&audio[audio.len().saturating_sub(context * hop)..])?;
        }
        let keep = codes[0].len();
        let new = ((req.duration_seconds * fr).round() as usize).max(1);
        let windows = plan(keep, new, window, context);
        let total: usize = windows.iter().map(|w| w.frames + k - 1 - w.prompt).sum();
        let conditioned = text.is_some() || chroma.is_some();
        let rows = if req.sampling.guided() && conditioned {
            2
        } else {
            1
        };
        let cross = match self.conditioning(text, None, rows)? {
            Conditioning::Cross(c) => c,
            Conditioning::Prefix { .. } => None,
        };
        let mut sampler = Sampler::new(&req.sampling);
        let mut done = 0;
        for w in &windows {
            let before = codes[0].len();
            let prompt: Vec<Vec<u32>> = codes
                .iter()
                .map(|c| c[before - w.prompt..].to_vec())
                .collect();
            let prompt = if w.prompt == 0 { Vec::new() } else { prompt };
            let mut pattern = DelayPattern::new(k, w.frames, &prompt, pad)?;
            let start_frame = before - w.prompt;
            let (prefix, prefix_len) = if self.is_melody() {
                let shifted = chroma.as_ref().map(|c| self.chroma_at(c, start_frame));
                match self.conditioning(text, shifted.as_deref(), rows)? {
                    Conditioning::Prefix { embeds, len } => (embeds, len),
                    Conditioning::Cross(_) => (Vec::new(), 0),
                }
            } else {
                (Vec::new(), 0)
            };
            let mut session =
                self.decoder
                    .start(rows, prefix_len + pattern.len() - 1, cross.as_ref())?;
            let first = pattern.first_generated();
            let columns: Vec<u32> = (0..first).flat_map(|t| pattern.column(t)).collect();
            let x = self.with_prefix(&prefix, prefix_len, &columns, rows, first)?;
            let mut logits = self
                .decoder
                .forward(&mut session, &x, prefix_len + first, false)?;
            for t in first..pattern.len() {
                let next = sampler.sample(&logits, rows, k, vocab);
                pattern.set(t, &next);
                done += 1;
                if !progress(Progress {
                    stage: Stage::Generating,
                    done,
                    total,
                }) {
                    return Err(MusicgenError::Canceled);
                }
                if t + 1 < pattern.len() {
                    logits = self.step(&mut session, &pattern.column(t), rows)?;
                }
            }
            for (all, new) in codes.iter_mut().zip(pattern.codes()) {
                all.extend_from_slice(&new[w.prompt..]);
            }
        }
        let chunk = ((req.decode_chunk_seconds * fr).round() as usize).max(1);
        let audio = self
            .encodec
            .decode_chunked(&codes, chunk, &mut |done, total| {
                progress(Progress {
                    stage: Stage::Decoding,
                    done,
                    total,
                })
            })?;
        Ok(Generated {
            audio,
            sample_rate: self.sample_rate(),
            codes,
            prompt_frames: keep,
            hop: self.cfg.audio_encoder.hop_length(),
        })
    }

    /// One position (the same tokens in every row) through the decoder.
    fn step(&self, s: &mut Session, column: &[u32], rows: usize) -> Result<Vec<f32>> {
        let tokens: Vec<u32> = (0..rows).flat_map(|_| column.iter().copied()).collect();
        let x = self.decoder.embed(&tokens, rows, 1)?;
        self.decoder.forward(s, &x, 1, false)
    }

    /// The prefill input: each row's prefix (melody) followed by the embedded columns.
    fn with_prefix(
        &self,
        prefix: &[f32],
        len: usize,
        columns: &[u32],
        rows: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        let tokens: Vec<u32> = (0..rows).flat_map(|_| columns.iter().copied()).collect();
        let x = self.decoder.embed(&tokens, rows, n)?;
        if len == 0 {
            return Ok(x);
        }
        let d = self.cfg.decoder.hidden_size;
        let mut out = Vec::with_capacity(rows * (len + n) * d);
        for r in 0..rows {
            out.extend_from_slice(&prefix[r * len * d..(r + 1) * len * d]);
            out.extend_from_slice(&x[r * n * d..(r + 1) * n * d]);
        }
        Ok(out)
    }

    /// The melody's chroma from the time of code frame `frame` on (cyclically, as the
    /// reference repeats a short melody), for windows after the first.
    fn chroma_at(&self, chroma: &[f32], frame: usize) -> Vec<f32> {
        let nc = self.cfg.num_chroma.unwrap_or(12);
        let frames = chroma.len() / nc;
        let rate = self.chroma.as_ref().map_or(1.0, |c| c.frame_rate());
        let shift = (frame as f64 / self.frame_rate() as f64 * rate) as usize % frames.max(1);
        let mut out = chroma[shift * nc..].to_vec();
        out.extend_from_slice(&chroma[..shift * nc]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_window_when_the_piece_fits() {
        assert_eq!(
            plan(0, 500, 1500, 600),
            vec![Window {
                prompt: 0,
                frames: 500
            }]
        );
        assert_eq!(
            plan(200, 500, 1500, 600),
            vec![Window {
                prompt: 200,
                frames: 700
            }]
        );
    }

    #[test]
    fn long_pieces_slide_the_window_keeping_the_context() {
        let w = plan(0, 3000, 1500, 600);
        assert_eq!(
            w[0],
            Window {
                prompt: 0,
                frames: 1500
            }
        );
        assert_eq!(
            w[1],
            Window {
                prompt: 600,
                frames: 1500
            }
        );
        let new: usize = w.iter().map(|w| w.frames - w.prompt).sum();
        assert_eq!(new, 3000);
        assert!(w.iter().all(|w| w.frames <= 1500 && w.prompt <= 600));
        // A prompt longer than the context contributes its end only.
        assert_eq!(
            plan(2000, 10, 1500, 600)[0],
            Window {
                prompt: 600,
                frames: 610
            }
        );
    }

    #[test]
    fn requests_are_validated_with_the_parameter_named() {
        let ok = Request::default();
        ok.validate().unwrap();
        let cases = [
            (
                Request {
                    duration_seconds: 0.0,
                    ..ok.clone()
                },
                "duration_seconds",
            ),
            (
                Request {
                    duration_seconds: 400.0,
                    ..ok.clone()
                },
                "duration_seconds",
            ),
            (
                Request {
                    duration_seconds: f32::NAN,
                    ..ok.clone()
                },
                "duration_seconds",
            ),
            (
                Request {
                    stride_seconds: 30.0,
                    ..ok.clone()
                },
                "stride_seconds",
            ),
            (
                Request {
                    window_seconds: 0.5,
                    ..ok.clone()
                },
                "window_seconds",
            ),
            (
                Request {
                    continuation: Some(vec![]),
                    ..ok.clone()
                },
                "continuation",
            ),
            (
                Request {
                    melody: Some(vec![0.0, f32::INFINITY]),
                    ..ok.clone()
                },
                "melody",
            ),
        ];
        for (r, key) in cases {
            let e = r.validate().unwrap_err();
            assert!(!e.is_retryable());
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
