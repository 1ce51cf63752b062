//! A whole MusicGen model loaded from its directory: tokenizer, T5, the projections into the
//! decoder's width, the decoder, EnCodec, and (melody) the chroma extractor; plus how a
//! request's prompt and melody become the decoder's conditioning.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::chroma::{ChromaConfig, ChromaExtractor};
use crate::config::MusicgenConfig;
use crate::decoder::{CrossStates, Decoder};
use crate::encodec::Encodec;
use crate::t5::T5Encoder;
use crate::tokenizer::PromptTokenizer;
use crate::weights::{self, ModelFiles};
use crate::{MusicgenError, Result};

pub struct MusicGen {
    pub(crate) cfg: MusicgenConfig,
    pub(crate) tokenizer: Option<PromptTokenizer>,
    pub(crate) t5: T5Encoder,
    /// Text states → decoder width (absent when T5 is already as wide).
    enc_to_dec: Option<Linear>,
    /// Melody: chroma → decoder width.
    audio_to_dec: Option<Linear>,
    pub(crate) decoder: Decoder,
    pub(crate) encodec: Encodec,
    pub(crate) chroma: Option<ChromaExtractor>,
    device: Device,
}

/// How the decoder is conditioned for one generation.
pub enum Conditioning {
    /// Cross-attention over text states (MusicGen).
    Cross(Option<CrossStates>),
    /// A prefix per row, `rows × len × hidden` (MusicGen-Melody).
    Prefix { embeds: Vec<f32>, len: usize },
}

impl MusicGen {
    /// Loads `dir` (the Hugging Face layout, see [`crate::weights`]) on `device`: the fast CPU
    /// decoder on the CPU, candle ops elsewhere.
    pub fn load(dir: &Path, variation: &str, device: &Device) -> Result<Self> {
        Self::load_with(dir, variation, device, false)
    }

    /// [`MusicGen::load`] with the candle-op decoder whatever the device (what CUDA runs; on
    /// the CPU for tests).
    pub fn load_portable(dir: &Path, variation: &str, device: &Device) -> Result<Self> {
        Self::load_with(dir, variation, device, true)
    }

    fn load_with(dir: &Path, variation: &str, device: &Device, portable: bool) -> Result<Self> {
        let files = ModelFiles::locate(dir, variation)?;
        let cfg = MusicgenConfig::load(&files.config)?;
        let tokenizer = PromptTokenizer::load(&files.tokenizer)?;
        let chroma = match (&files.preprocessor, cfg.is_melody()) {
            (Some(p), true) => Some(ChromaConfig::load(p)?),
            (None, true) => Some(ChromaConfig::default()),
            _ => None,
        };
        let vb = weights::var_builder(&files.weights, device)?;
        let at = files.weights[0].clone();
        Self::build(vb, &cfg, Some(tokenizer), chroma, portable).map_err(|e| match e {
            MusicgenError::Candle(c) => MusicgenError::invalid(at, c.to_string()),
            other => other,
        })
    }

    /// Builds the model from weights already in a [`VarBuilder`] (random models, tests).
    pub fn build(
        vb: VarBuilder,
        cfg: &MusicgenConfig,
        tokenizer: Option<PromptTokenizer>,
        chroma: Option<ChromaConfig>,
        portable: bool,
    ) -> Result<Self> {
        cfg.validate()
            .map_err(|m| MusicgenError::invalid("config.json", m))?;
        let d = cfg.decoder.hidden_size;
        let t = cfg.text_encoder.d_model;
        let enc_to_dec = if t != d {
            Some(Linear::new(
                vb.get((d, t), "enc_to_dec_proj.weight")?,
                Some(vb.get(d, "enc_to_dec_proj.bias")?),
            ))
        } else {
            None
        };
        let melody = cfg.is_melody();
        let audio_to_dec = match cfg.num_chroma.filter(|c| melody && *c != d) {
            Some(c) => Some(Linear::new(
                vb.get((d, c), "audio_enc_to_dec_proj.weight")?,
                Some(vb.get(d, "audio_enc_to_dec_proj.bias")?),
            )),
            None => None,
        };
        let decoder = if portable {
            Decoder::load_portable(vb.clone(), &cfg.decoder, !melody)?
        } else {
            Decoder::load(vb.clone(), &cfg.decoder, !melody)?
        };
        Ok(Self {
            cfg: cfg.clone(),
            tokenizer,
            t5: T5Encoder::load(&vb, &cfg.text_encoder)?,
            enc_to_dec,
            audio_to_dec,
            decoder,
            encodec: Encodec::load(&vb, &cfg.audio_encoder)?,
            chroma: melody.then(|| ChromaExtractor::new(&chroma.unwrap_or_default())),
            device: vb.device().clone(),
        })
    }

    /// A model of `cfg`'s shape with random weights (benchmarks).
    pub fn random(cfg: &MusicgenConfig, device: &Device, seed: u64) -> Result<Self> {
        let mut rng = crate::sampling::Rng::new(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in weights::expected_tensors(cfg) {
            let n: usize = shape.iter().product();
            // Uniform in ±1/√fan_in keeps activations in range; weight-norm gains at 1.
            let fan_in = if shape.len() > 1 { n / shape[0] } else { 1 };
            let scale = if name.ends_with("weight_g") {
                0.0
            } else {
                1.0 / (fan_in as f64).sqrt()
            };
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    if scale == 0.0 {
                        1.0
                    } else {
                        ((rng.next_f64() * 2.0 - 1.0) * scale) as f32
                    }
                })
                .collect();
            tensors.insert(name, Tensor::from_vec(data, shape, device)?);
        }
        let vb = weights::var_builder_from(tensors, device);
        Self::build(vb, cfg, None, None, false)
    }

    pub fn config(&self) -> &MusicgenConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn is_melody(&self) -> bool {
        self.cfg.is_melody()
    }

    pub fn sample_rate(&self) -> u32 {
        self.cfg.audio_encoder.sampling_rate as u32
    }

    /// Code frames per second (50).
    pub fn frame_rate(&self) -> usize {
        self.cfg.audio_encoder.frame_rate()
    }

    pub fn encodec(&self) -> &Encodec {
        &self.encodec
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub fn t5(&self) -> &T5Encoder {
        &self.t5
    }

    pub fn chroma(&self) -> Option<&ChromaExtractor> {
        self.chroma.as_ref()
    }

    /// The prompt's token ids.
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .as_ref()
            .ok_or_else(|| {
                MusicgenError::Tokenizer("this model was built without a tokenizer".into())
            })?
            .encode(prompt)
    }

    /// Text states projected to the decoder's width, `len × hidden`.
    pub fn text_states(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let h = self.t5.forward(ids)?;
        let h = match &self.enc_to_dec {
            Some(p) => p.forward(&h)?,
            None => h,
        };
        Ok(h.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The conditioning of one generation. `text`: token ids, or none for an unconditional
    /// run. `chroma`: melody only, `frames × num_chroma` one-hot (none: the null melody).
    /// `rows` is 2 with guidance (conditional, then null), else 1.
    pub fn conditioning(
        &self,
        text: Option<&[u32]>,
        chroma: Option<&[f32]>,
        rows: usize,
    ) -> Result<Conditioning> {
        let d = self.cfg.decoder.hidden_size;
        let states = text.map(|ids| self.text_states(ids)).transpose()?;
        if !self.is_melody() {
            return Ok(Conditioning::Cross(states.map(|s| CrossStates {
                len: s.len() / d,
                states: s,
                rows: (0..rows).map(|r| r == 0).collect(),
            })));
        }
        let nc = self.cfg.num_chroma.unwrap_or(12);
        let chroma_len = self.cfg.chroma_length.unwrap_or(235);
        let mut null = vec![0f32; nc];
        null[0] = 1.0;
        let cond_chroma = chroma.unwrap_or(&null);
        if cond_chroma.is_empty() || !cond_chroma.len().is_multiple_of(nc) {
            return Err(MusicgenError::params(format!(
                "chroma must be frames × {nc}"
            )));
        }
        let audio = |c: &[f32]| -> Result<Vec<f32>> {
            let frames = c.len() / nc;
            let t = Tensor::from_slice(c, (1, frames, nc), &self.device)?;
            let p = match &self.audio_to_dec {
                Some(p) => p.forward(&t)?,
                None => t,
            };
            let p = p.flatten_all()?.to_vec1::<f32>()?;
            // Repeated to fill, then cut to chroma_length frames, as the reference does.
            Ok((0..chroma_len)
                .flat_map(|i| p[(i % frames) * d..(i % frames + 1) * d].to_vec())
                .collect())
        };
        let text_len = states.as_ref().map_or(0, |s| s.len() / d);
        let len = chroma_len + text_len;
        let mut embeds = Vec::with_capacity(rows * len * d);
        for r in 0..rows {
            embeds.extend(audio(if r == 0 { cond_chroma } else { &null })?);
            match &states {
                Some(s) if r == 0 => embeds.extend_from_slice(s),
                Some(s) => embeds.extend(std::iter::repeat_n(0f32, s.len())),
                None => {}
            }
        }
        Ok(Conditioning::Prefix { embeds, len })
    }
}
