//! Gemma 3n (`Gemma3nForConditionalGeneration` without the vision tower): the text decoder,
//! the audio encoder, and the glue that puts audio into the text sequence. Audio becomes
//! "soft tokens": encoder frames normalised and projected to the text width, taking the
//! places of the prompt's audio placeholder tokens (padded to the fixed count the prompt
//! reserves with the embedding of the audio vocabulary's last token).

pub mod audio;
pub mod config;
pub mod features;
pub mod text;
pub mod transcribe;
pub mod weights;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{GemmaError, Result};
use crate::generate::argmax;
use crate::layers::{rms_norm, KvCache, Linear};
pub use config::Gemma3nConfig;

/// Maps audio encoder states or audio-vocabulary ids into the text width.
struct Embedder {
    embedding: Tensor,
    hard_norm: Tensor,
    soft_norm: Tensor,
    projection: Linear,
    eps: f64,
    vocab_offset: usize,
}

impl Embedder {
    fn load(w: &weights::Weights, p: &str, eps: f64, vocab_offset: usize) -> Result<Self> {
        Ok(Self {
            embedding: w.get(&format!("{p}.embedding.weight"))?,
            hard_norm: w.get(&format!("{p}.hard_embedding_norm.weight"))?,
            soft_norm: w.get(&format!("{p}.soft_embedding_norm.weight"))?,
            projection: Linear::float(w.get(&format!("{p}.embedding_projection.weight"))?),
            eps,
            vocab_offset,
        })
    }

    fn project(&self, normed: &Tensor) -> Result<Tensor> {
        rms_norm(&self.projection.forward(normed)?, None, self.eps)
    }

    fn soft(&self, x: &Tensor) -> Result<Tensor> {
        self.project(&rms_norm(x, Some(&self.soft_norm), self.eps)?)
    }

    fn hard(&self, ids: &[u32]) -> Result<Tensor> {
        let rows: Vec<u32> = ids.iter().map(|&i| i - self.vocab_offset as u32).collect();
        let e = self
            .embedding
            .index_select(&Tensor::new(rows.as_slice(), self.embedding.device())?, 0)?;
        self.project(&rms_norm(&e, Some(&self.hard_norm), self.eps)?)
    }
}

/// A loaded Gemma 3n (text and audio).
pub struct Gemma3n {
    pub config: Gemma3nConfig,
    pub text: text::TextModel,
    pub audio: audio::AudioEncoder,
    embed_audio: Embedder,
    /// Embeds the vision range's hard tokens (roar has no vision tower, so no image soft
    /// tokens; the ids themselves still embed as the reference embeds them).
    embed_vision: Embedder,
    features: features::FeatureExtractor,
}

impl Gemma3n {
    /// Loads `config.json` and the safetensors of a Hugging Face model directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|_| GemmaError::WeightsMissing {
            path: cfg_path.clone(),
            hint: "a Hugging Face Gemma 3n directory (google/gemma-3n-E2B-it layout)".into(),
        })?;
        let config = Gemma3nConfig::from_json(&text)?;
        let w = weights::Weights::open(dir, device)?;
        let tm = text::TextModel::load(&w, "model.language_model", config.text.clone(), device)?;
        let am = audio::AudioEncoder::load(&w, "model.audio_tower", config.audio.clone(), device)?;
        let embed_audio = Embedder::load(
            &w,
            "model.embed_audio",
            config.audio.rms_norm_eps,
            config.audio.vocab_offset,
        )?;
        let embed_vision = Embedder::load(
            &w,
            "model.embed_vision",
            config.vision_rms_norm_eps,
            config.vision_vocab_offset,
        )?;
        Ok(Self {
            features: features::FeatureExtractor::new(config.audio.input_feat_size),
            embed_vision,
            text: tm,
            audio: am,
            embed_audio,
            config,
        })
    }

    pub fn device(&self) -> &Device {
        self.text.device()
    }

    /// Log-mel features of 16 kHz audio (at most 30 s).
    pub fn features(&self, samples_16k: &[f32]) -> Result<features::Features> {
        self.features.extract(samples_16k)
    }

    /// Encoder states `[tokens, audio_hidden]` of one clip's features and their padding.
    pub fn encode_audio(&self, f: &features::Features) -> Result<(Tensor, Vec<bool>)> {
        let dev = self.device();
        let mel = Tensor::from_slice(&f.mel, (1, f.frames, f.mels), dev)?;
        let pad: Vec<u8> = f.padding.iter().map(|&p| u8::from(p)).collect();
        let pad = Tensor::from_vec(pad, (1, f.frames), dev)?;
        let (x, pad) = self.audio.forward(&mel, &pad)?;
        let pad: Vec<u8> = pad.squeeze(0)?.to_vec1()?;
        Ok((x.squeeze(0)?, pad.into_iter().map(|p| p != 0).collect()))
    }

    /// The soft tokens `[audio_soft_tokens_per_image, hidden]` for encoder states: padded
    /// frames and the rest of the reserved count take the audio vocabulary's last embedding.
    pub fn audio_soft_tokens(&self, states: &Tensor, padding: &[bool]) -> Result<Tensor> {
        let n = self.config.audio_soft_tokens_per_image;
        let soft = self.embed_audio.soft(states)?;
        let fill = self
            .embed_audio
            .hard(&[(self.config.text.vocab_size - 1) as u32])?;
        let rows = soft.dim(0)?;
        if rows > n {
            return Err(GemmaError::InvalidInput(format!(
                "audio gives {rows} soft tokens, the prompt reserves {n}"
            )));
        }
        let keep: Vec<f32> = padding.iter().map(|&p| if p { 0.0 } else { 1.0 }).collect();
        let keep = Tensor::from_vec(keep, (rows, 1), soft.device())?;
        let soft = (soft.broadcast_mul(&keep)? + fill.broadcast_mul(&(1.0 - &keep)?)?)?;
        Ok(Tensor::cat(&[soft, fill.repeat((n - rows, 1))?], 0)?)
    }

    /// Input embeddings and per-layer embeddings of a prompt. Ids in the audio vocabulary are
    /// embedded by the audio embedder; the `audio_token_id` placeholders take `audio`'s rows
    /// in order (their count must match). Ids in the vision range are embedded by the vision
    /// embedder (as hard tokens: there is no vision tower to give image soft tokens).
    pub fn embed_prompt(&self, ids: &[u32], audio: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let vocab = c.text.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(GemmaError::InvalidInput(format!(
                "token {bad} outside the vocabulary"
            )));
        }
        let dev = self.device();
        let mut x = self.text.embed(&Tensor::new(ids, dev)?)?;
        let vision = c.vision_vocab_offset..c.audio.vocab_offset;
        for (range, embedder) in [
            (vision, &self.embed_vision),
            (c.audio.vocab_offset..vocab, &self.embed_audio),
        ] {
            let at: Vec<usize> = (0..ids.len())
                .filter(|&i| range.contains(&(ids[i] as usize)))
                .collect();
            if !at.is_empty() {
                let hard_ids: Vec<u32> = at.iter().map(|&i| ids[i]).collect();
                x = scatter_rows(&x, &at, &embedder.hard(&hard_ids)?)?;
            }
        }
        let slots: Vec<usize> = (0..ids.len())
            .filter(|&i| ids[i] == c.audio_token_id)
            .collect();
        match audio {
            Some(a) => {
                if a.dim(0)? != slots.len() {
                    return Err(GemmaError::InvalidInput(format!(
                        "{} audio soft tokens for {} placeholders",
                        a.dim(0)?,
                        slots.len()
                    )));
                }
                x = scatter_rows(&x, &slots, a)?;
            }
            None if !slots.is_empty() => {
                return Err(GemmaError::InvalidInput(
                    "audio placeholders without audio".into(),
                ))
            }
            None => {}
        }
        let per_layer = self.text.per_layer_embed(ids)?;
        Ok((x, per_layer))
    }

    /// Logits `[last, vocab]` for a prompt (with its audio) after `cache`.
    pub fn forward(
        &self,
        ids: &[u32],
        audio: Option<&Tensor>,
        cache: &mut KvCache,
        last: usize,
    ) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(GemmaError::InvalidInput("no tokens".into()));
        }
        let (x, pl) = self.embed_prompt(ids, audio)?;
        self.text.forward(&x, &pl, cache, last)
    }

    /// Greedy continuation of a prompt with its audio soft tokens: at most `max_new` tokens,
    /// stopping after a token in `stop` or when `on_token` returns false.
    pub fn greedy(
        &self,
        ids: &[u32],
        audio: Option<&Tensor>,
        max_new: usize,
        stop: &[u32],
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let mut cache = self.text.new_cache();
        let mut logits = self.forward(ids, audio, &mut cache, 1)?;
        let mut out = Vec::with_capacity(max_new);
        for _ in 0..max_new {
            let next = argmax(&logits)?;
            out.push(next);
            if stop.contains(&next) || !on_token(next) {
                break;
            }
            logits = self.forward(&[next], None, &mut cache, 1)?;
        }
        Ok(out)
    }
}

/// `x` with rows `at[i]` replaced by `rows[i]`.
fn scatter_rows(x: &Tensor, at: &[usize], rows: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    // Index map: for each output row, where it comes from in [x; rows].
    let mut src: Vec<u32> = (0..n as u32).collect();
    for (k, &i) in at.iter().enumerate() {
        src[i] = (n + k) as u32;
    }
    let all = Tensor::cat(&[x, &rows.to_dtype(DType::F32)?], 0)?;
    Ok(all.index_select(&Tensor::new(src.as_slice(), x.device())?, 0)?)
}
