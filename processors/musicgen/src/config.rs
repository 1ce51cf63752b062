//! The Hugging Face `config.json` of a MusicGen model (`MusicgenConfig` or
//! `MusicgenMelodyConfig`): a T5 text encoder, an EnCodec audio codec and the MusicGen decoder,
//! with the reference's defaults for keys that older files leave out. [`MusicgenConfig::validate`]
//! refuses what this crate does not run, with the reason.

use serde::Deserialize;

use crate::{MusicgenError, Result};

fn d32() -> usize {
    32
}
fn d128() -> usize {
    128
}
fn relu() -> String {
    "relu".into()
}
fn t5_eps() -> f64 {
    1e-6
}
fn one() -> usize {
    1
}
fn gelu() -> String {
    "gelu".into()
}
fn reflect() -> String {
    "reflect".into()
}
fn weight_norm() -> String {
    "weight_norm".into()
}
fn two() -> usize {
    2
}
fn seven() -> usize {
    7
}
fn three() -> usize {
    3
}
fn ratio_one() -> f64 {
    1.0
}

/// The T5 encoder (`T5Config`, encoder half only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "d32")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "d128")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "relu")]
    pub feed_forward_proj: String,
    #[serde(default = "t5_eps")]
    pub layer_norm_epsilon: f64,
}

/// The MusicGen decoder (`MusicgenDecoderConfig` / `MusicgenMelodyDecoderConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderConfig {
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub num_hidden_layers: usize,
    pub ffn_dim: usize,
    pub num_attention_heads: usize,
    pub hidden_size: usize,
    pub num_codebooks: usize,
    #[serde(default = "one")]
    pub audio_channels: usize,
    /// The id of the BOS/pad token that fills the delay pattern (`vocab_size` in the releases).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default = "gelu")]
    pub activation_function: String,
    #[serde(default)]
    pub cross_attention_hidden_size: Option<usize>,
}

impl DecoderConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The token that starts every codebook and fills the delay pattern's corners.
    pub fn pad_token(&self) -> u32 {
        self.pad_token_id
            .or(self.bos_token_id)
            .unwrap_or(self.vocab_size as u32)
    }
}

/// EnCodec (`EncodecConfig`), as used at 32 kHz by MusicGen.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EncodecConfig {
    pub target_bandwidths: Vec<f64>,
    pub sampling_rate: usize,
    #[serde(default = "one")]
    pub audio_channels: usize,
    #[serde(default)]
    pub normalize: bool,
    #[serde(default)]
    pub chunk_length_s: Option<f64>,
    pub hidden_size: usize,
    pub num_filters: usize,
    #[serde(default = "one")]
    pub num_residual_layers: usize,
    pub upsampling_ratios: Vec<usize>,
    #[serde(default = "weight_norm")]
    pub norm_type: String,
    #[serde(default = "seven")]
    pub kernel_size: usize,
    #[serde(default = "seven")]
    pub last_kernel_size: usize,
    #[serde(default = "three")]
    pub residual_kernel_size: usize,
    #[serde(default = "two")]
    pub dilation_growth_rate: usize,
    #[serde(default)]
    pub use_causal_conv: bool,
    #[serde(default = "reflect")]
    pub pad_mode: String,
    #[serde(default = "two")]
    pub compress: usize,
    #[serde(default = "two")]
    pub num_lstm_layers: usize,
    #[serde(default = "ratio_one")]
    pub trim_right_ratio: f64,
    pub codebook_size: usize,
    #[serde(default)]
    pub codebook_dim: Option<usize>,
    #[serde(default)]
    pub use_conv_shortcut: bool,
}

impl EncodecConfig {
    /// Samples per code frame (640 at 32 kHz).
    pub fn hop_length(&self) -> usize {
        self.upsampling_ratios.iter().product()
    }

    /// Code frames per second (50 at 32 kHz), rounded up as the reference does.
    pub fn frame_rate(&self) -> usize {
        self.sampling_rate.div_ceil(self.hop_length().max(1))
    }

    pub fn codebook_dim(&self) -> usize {
        self.codebook_dim.unwrap_or(self.hidden_size)
    }

    /// Quantizers at the largest bandwidth: `1000 · bw // (frame_rate · bits per code)`.
    pub fn num_quantizers(&self) -> usize {
        let bits = (self.codebook_size.max(2) as f64).log2().ceil();
        let bw = self.target_bandwidths.last().copied().unwrap_or(0.0);
        (1000.0 * bw / (self.frame_rate() as f64 * bits)).floor() as usize
    }
}

/// A whole MusicGen (or MusicGen-Melody) model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MusicgenConfig {
    #[serde(default)]
    pub model_type: String,
    pub text_encoder: T5Config,
    pub audio_encoder: EncodecConfig,
    pub decoder: DecoderConfig,
    /// Melody only: chroma bins of the conditioning melody (12).
    #[serde(default)]
    pub num_chroma: Option<usize>,
    /// Melody only: chroma frames the conditioning prefix is padded or cut to (235 ≈ 30 s).
    #[serde(default)]
    pub chroma_length: Option<usize>,
}

impl MusicgenConfig {
    /// Whether this is MusicGen-Melody: conditioning is a prefix of chroma and text frames
    /// before the decoder's tokens, instead of cross-attention over the text.
    pub fn is_melody(&self) -> bool {
        self.model_type == "musicgen_melody"
    }

    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Self::from_json(&text).map_err(|m| MusicgenError::invalid(path, m))
    }

    /// Refuses what this crate does not run, naming the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text_encoder;
        let d = &self.decoder;
        let e = &self.audio_encoder;
        if !matches!(self.model_type.as_str(), "musicgen" | "musicgen_melody") {
            return Err(format!(
                "model_type {:?} is not musicgen or musicgen_melody",
                self.model_type
            ));
        }
        if t.feed_forward_proj != "relu" {
            return Err(format!(
                "text_encoder.feed_forward_proj {:?}: only T5's \"relu\" feed-forward is supported (the released MusicGen models use t5-base)",
                t.feed_forward_proj
            ));
        }
        if t.num_heads == 0 || t.d_kv == 0 || t.relative_attention_num_buckets < 4 {
            return Err("text_encoder: num_heads, d_kv must be > 0 and buckets >= 4".into());
        }
        if d.num_attention_heads == 0 || !d.hidden_size.is_multiple_of(d.num_attention_heads) {
            return Err(format!(
                "decoder.hidden_size {} is not a multiple of num_attention_heads {}",
                d.hidden_size, d.num_attention_heads
            ));
        }
        if d.activation_function != "gelu" {
            return Err(format!(
                "decoder.activation_function {:?}: only \"gelu\" is supported",
                d.activation_function
            ));
        }
        if d.audio_channels != 1 {
            return Err(
                "decoder.audio_channels 2: the stereo models are not supported (mono only)".into(),
            );
        }
        if d.num_codebooks == 0 || d.num_codebooks != e.num_quantizers() {
            return Err(format!(
                "decoder.num_codebooks {} does not match the audio encoder's {} quantizers",
                d.num_codebooks,
                e.num_quantizers()
            ));
        }
        if d.vocab_size != e.codebook_size {
            return Err(format!(
                "decoder.vocab_size {} is not the codebook size {}",
                d.vocab_size, e.codebook_size
            ));
        }
        if d.pad_token() as usize != d.vocab_size {
            return Err(format!(
                "decoder pad/bos token {} is not vocab_size {} (the delay pattern's filler)",
                d.pad_token(),
                d.vocab_size
            ));
        }
        if d.cross_attention_hidden_size
            .is_some_and(|h| h != d.hidden_size)
        {
            return Err("decoder.cross_attention_hidden_size must equal hidden_size".into());
        }
        if e.audio_channels != 1 || e.normalize || e.chunk_length_s.is_some() {
            return Err(
                "audio_encoder: only the mono, unnormalised, unchunked EnCodec (MusicGen's 32 kHz codec) is supported"
                    .into(),
            );
        }
        if e.norm_type != "weight_norm" {
            return Err(format!(
                "audio_encoder.norm_type {:?}: only weight_norm is supported",
                e.norm_type
            ));
        }
        if !matches!(e.pad_mode.as_str(), "reflect" | "constant") {
            return Err(format!(
                "audio_encoder.pad_mode {:?}: reflect or constant",
                e.pad_mode
            ));
        }
        if e.upsampling_ratios.is_empty() || e.upsampling_ratios.contains(&0) || e.compress == 0 {
            return Err("audio_encoder: upsampling_ratios and compress must be positive".into());
        }
        if !e.use_causal_conv && e.trim_right_ratio != 1.0 {
            return Err("audio_encoder.trim_right_ratio != 1 needs causal convolutions".into());
        }
        if self.is_melody() {
            match (self.num_chroma, self.chroma_length) {
                (Some(c), Some(l)) if c > 0 && l > 0 => {}
                _ => return Err("musicgen_melody needs num_chroma and chroma_length".into()),
            }
        }
        Ok(())
    }

    /// The shape of `facebook/musicgen-small` (t5-base, a 24-layer 1024-wide decoder, the
    /// 32 kHz EnCodec), for benchmarks with random weights.
    pub fn small() -> Self {
        Self {
            model_type: "musicgen".into(),
            text_encoder: T5Config {
                vocab_size: 32128,
                d_model: 768,
                d_kv: 64,
                d_ff: 3072,
                num_layers: 12,
                num_heads: 12,
                relative_attention_num_buckets: 32,
                relative_attention_max_distance: 128,
                feed_forward_proj: "relu".into(),
                layer_norm_epsilon: 1e-6,
            },
            audio_encoder: EncodecConfig {
                target_bandwidths: vec![2.2],
                sampling_rate: 32000,
                audio_channels: 1,
                normalize: false,
                chunk_length_s: None,
                hidden_size: 128,
                num_filters: 64,
                num_residual_layers: 1,
                upsampling_ratios: vec![8, 5, 4, 4],
                norm_type: "weight_norm".into(),
                kernel_size: 7,
                last_kernel_size: 7,
                residual_kernel_size: 3,
                dilation_growth_rate: 2,
                use_causal_conv: false,
                pad_mode: "reflect".into(),
                compress: 2,
                num_lstm_layers: 2,
                trim_right_ratio: 1.0,
                codebook_size: 2048,
                codebook_dim: Some(128),
                use_conv_shortcut: false,
            },
            decoder: DecoderConfig {
                vocab_size: 2048,
                max_position_embeddings: 2048,
                num_hidden_layers: 24,
                ffn_dim: 4096,
                num_attention_heads: 16,
                hidden_size: 1024,
                num_codebooks: 4,
                audio_channels: 1,
                pad_token_id: Some(2048),
                bos_token_id: Some(2048),
                activation_function: "gelu".into(),
                cross_attention_hidden_size: None,
            },
            num_chroma: None,
            chroma_length: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_preset_is_valid_and_has_the_released_rates() {
        let c = MusicgenConfig::small();
        c.validate().unwrap();
        assert_eq!(c.audio_encoder.hop_length(), 640);
        assert_eq!(c.audio_encoder.frame_rate(), 50);
        assert_eq!(c.audio_encoder.num_quantizers(), 4);
    }

    #[test]
    fn refuses_stereo_and_gated_t5_with_the_key() {
        let mut c = MusicgenConfig::small();
        c.decoder.audio_channels = 2;
        assert!(c.validate().unwrap_err().contains("audio_channels"));
        let mut c = MusicgenConfig::small();
        c.text_encoder.feed_forward_proj = "gated-gelu".into();
        assert!(c.validate().unwrap_err().contains("feed_forward_proj"));
        let mut c = MusicgenConfig::small();
        c.model_type = "musicgen_melody".into();
        assert!(c.validate().unwrap_err().contains("chroma"));
    }
}
