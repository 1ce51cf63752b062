//! Sung words from audio with Gemma 3n: the audio is cut into clips the prompt has room for
//! (30 s at E2B/E4B sizes), each clip's soft tokens go into a chat turn asking for the lyrics,
//! and the answer is decoded greedily. The prompt follows the released chat format
//! (`<start_of_turn>user … <end_of_turn>`, the audio between `<start_of_audio>` and its end
//! marker); whether real E2B/E4B weights answer it well is not proven here (no test has them).

use std::path::Path;

use candle_core::Device;
use tokenizers::Tokenizer;

use super::{features, Gemma3n};
use crate::error::{GemmaError, Result};

/// What is asked of the model for each clip.
const INSTRUCTION: &str =
    "Transcribe the lyrics sung in this audio. Write only the words, one sung line per line.";

/// Tokens allowed per second of audio (fast rap is about four words a second).
const TOKENS_PER_SECOND: f32 = 8.0;
const MIN_NEW_TOKENS: usize = 16;

/// A Gemma 3n model with its tokenizer, ready to transcribe.
pub struct Transcriber {
    model: Gemma3n,
    tokenizer: Tokenizer,
    bos: u32,
    stop: Vec<u32>,
}

impl Transcriber {
    /// Loads a Hugging Face Gemma 3n directory (`config.json`, safetensors, `tokenizer.json`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(GemmaError::WeightsMissing {
                path,
                hint: "a Hugging Face Gemma 3n directory (google/gemma-3n-E2B-it layout)".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(&path)
            .map_err(|e| GemmaError::Tokenizer(format!("{}: {e}", path.display())))?;
        let id = |piece: &str| {
            tokenizer.token_to_id(piece).ok_or_else(|| {
                GemmaError::InvalidModel(format!("{} has no {piece} token", path.display()))
            })
        };
        let bos = id("<bos>")?;
        let stop = vec![id("<eos>")?, id("<end_of_turn>")?];
        let model = Gemma3n::load(dir, device)?;
        Ok(Self {
            model,
            tokenizer,
            bos,
            stop,
        })
    }

    /// The longest clip (in 16 kHz samples) whose soft tokens fit the prompt's reserved count:
    /// the encoder keeps one state per `stride × reduction` feature frames (10 ms each), and a
    /// margin of two states covers the convolutions' padding.
    pub fn clip_samples(&self) -> usize {
        let a = &self.model.config.audio;
        let stride: usize = a.sscp_conv_stride_size.iter().map(|s| s[0]).product();
        let per_state = stride.max(1) * a.conf_reduction_factor.max(1);
        let states = self
            .model
            .config
            .audio_soft_tokens_per_image
            .saturating_sub(2);
        (states * per_state * 160).clamp(160, features::MAX_SAMPLES)
    }

    /// The prompt's ids around `n` audio placeholders.
    fn prompt(&self, n: usize) -> Result<Vec<u32>> {
        let c = &self.model.config;
        let enc = |text: &str| -> Result<Vec<u32>> {
            Ok(self
                .tokenizer
                .encode(text, false)
                .map_err(|e| GemmaError::Tokenizer(e.to_string()))?
                .get_ids()
                .to_vec())
        };
        let mut ids = vec![self.bos];
        ids.extend(enc("<start_of_turn>user\n")?);
        ids.push(c.boa_token_id);
        ids.extend(std::iter::repeat_n(c.audio_token_id, n));
        ids.push(c.eoa_token_id);
        ids.extend(enc(&format!(
            "\n\n{INSTRUCTION}<end_of_turn>\n<start_of_turn>model\n"
        ))?);
        Ok(ids)
    }

    /// The words sung in `samples_16k` (16 kHz mono), clip by clip, one clip's answer per
    /// paragraph. `progress` gets the share done after each clip and token; returning false
    /// stops the work with [`GemmaError::Canceled`].
    pub fn transcribe(
        &self,
        samples_16k: &[f32],
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<String> {
        let clip = self.clip_samples();
        let clips: Vec<&[f32]> = samples_16k.chunks(clip).collect();
        let n = self.model.config.audio_soft_tokens_per_image;
        let prompt = self.prompt(n)?;
        let text_end = self.model.config.vision_vocab_offset as u32;
        let mut out = Vec::with_capacity(clips.len());
        for (i, samples) in clips.iter().enumerate() {
            let f = self.model.features(samples)?;
            let (states, pad) = self.model.encode_audio(&f)?;
            let soft = self.model.audio_soft_tokens(&states, &pad)?;
            let seconds = samples.len() as f32 / features::SAMPLE_RATE as f32;
            let budget = ((seconds * TOKENS_PER_SECOND).ceil() as usize).max(MIN_NEW_TOKENS);
            let mut step = 0usize;
            let mut stopped = false;
            let ids = self
                .model
                .greedy(&prompt, Some(&soft), budget, &self.stop, &mut |_| {
                    step += 1;
                    let done = (i as f32 + step as f32 / budget as f32) / clips.len() as f32;
                    stopped = !progress(done.min(1.0));
                    !stopped
                })?;
            if stopped {
                return Err(GemmaError::Canceled);
            }
            // Only text pieces are words: the stop token and any vision/audio id are not.
            let text: Vec<u32> = ids
                .into_iter()
                .filter(|id| *id < text_end && !self.stop.contains(id))
                .collect();
            let answer = self
                .tokenizer
                .decode(&text, true)
                .map_err(|e| GemmaError::Tokenizer(e.to_string()))?;
            let answer = answer.trim();
            if !answer.is_empty() {
                out.push(answer.to_string());
            }
            if !progress((i + 1) as f32 / clips.len() as f32) {
                return Err(GemmaError::Canceled);
            }
        }
        Ok(out.join("\n\n"))
    }
}
