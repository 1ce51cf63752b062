//! Gemma 3n's `config.json` (the Hugging Face layout of `Gemma3nForConditionalGeneration`),
//! both the older flat rope keys and transformers 5's `rope_parameters`.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{GemmaError, Result};

/// The text decoder's sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub vocab_size_per_layer_input: usize,
    pub hidden_size: usize,
    pub hidden_size_per_layer_input: usize,
    pub intermediate_size: Vec<usize>,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_global: f64,
    pub rope_local: f64,
    pub sliding_window: usize,
    /// `true` for a sliding-window layer, per layer.
    pub sliding: Vec<bool>,
    pub final_logit_softcapping: Option<f64>,
    pub altup_active_idx: usize,
    pub altup_correct_scale: bool,
    pub altup_num_inputs: usize,
    pub num_kv_shared_layers: usize,
    pub laurel_rank: usize,
    pub activation_sparsity: Vec<f64>,
}

/// The audio encoder's sizes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AudioConfig {
    pub vocab_size: usize,
    pub vocab_offset: usize,
    pub input_feat_size: usize,
    pub hidden_size: usize,
    pub rms_norm_eps: f64,
    pub gradient_clipping: f64,
    pub conf_attention_chunk_size: usize,
    pub conf_attention_context_left: usize,
    pub conf_attention_context_right: usize,
    pub conf_attention_logit_cap: f64,
    pub conf_num_attention_heads: usize,
    pub conf_num_hidden_layers: usize,
    pub conf_conv_kernel_size: usize,
    pub conf_reduction_factor: usize,
    pub conf_residual_weight: f64,
    pub sscp_conv_channel_size: Vec<usize>,
    pub sscp_conv_group_norm_eps: f64,
    pub sscp_conv_kernel_size: Vec<Vec<usize>>,
    pub sscp_conv_stride_size: Vec<Vec<usize>>,
}

/// The whole model's config.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3nConfig {
    pub text: TextConfig,
    pub audio: AudioConfig,
    pub audio_soft_tokens_per_image: usize,
    pub audio_token_id: u32,
    pub boa_token_id: u32,
    pub eoa_token_id: u32,
    /// Where the vision range's hard tokens start (ids from here up to the audio offset).
    pub vision_vocab_offset: usize,
    pub vision_rms_norm_eps: f64,
}

impl Gemma3nConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("config.json: {e}")))?;
        let t = v
            .get("text_config")
            .ok_or_else(|| invalid("config.json has no text_config".into()))?;
        let a = v
            .get("audio_config")
            .ok_or_else(|| invalid("config.json has no audio_config".into()))?;
        let audio: AudioConfig =
            serde_json::from_value(a.clone()).map_err(|e| invalid(format!("audio_config: {e}")))?;
        let text = text_config(t)?;
        let u = |k: &str, d: u64| v.get(k).and_then(Value::as_u64).unwrap_or(d);
        let cfg = Self {
            audio_soft_tokens_per_image: u("audio_soft_tokens_per_image", 188) as usize,
            audio_token_id: u("audio_token_id", 262_273) as u32,
            boa_token_id: u("boa_token_id", 256_000) as u32,
            eoa_token_id: u("eoa_token_id", 262_272) as u32,
            vision_vocab_offset: v
                .pointer("/vision_config/vocab_offset")
                .and_then(Value::as_u64)
                .unwrap_or(262_144) as usize,
            vision_rms_norm_eps: v
                .pointer("/vision_config/rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            text,
            audio,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let t = &self.text;
        let a = &self.audio;
        let n = t.num_hidden_layers;
        let checks = [
            (
                t.num_attention_heads
                    .is_multiple_of(t.num_key_value_heads.max(1)),
                "heads not a multiple of kv heads",
            ),
            (
                t.intermediate_size.len() == n,
                "intermediate_size per layer",
            ),
            (t.sliding.len() == n, "layer_types per layer"),
            (
                t.activation_sparsity.len() == n,
                "activation_sparsity_pattern per layer",
            ),
            (t.altup_active_idx < t.altup_num_inputs, "altup_active_idx"),
            (t.num_kv_shared_layers < n, "num_kv_shared_layers"),
            (t.head_dim.is_multiple_of(2), "head_dim even"),
            (
                a.hidden_size
                    .is_multiple_of(a.conf_num_attention_heads.max(1)),
                "audio heads",
            ),
            (a.sscp_conv_channel_size.len() == 2, "two sscp convolutions"),
            (
                a.sscp_conv_kernel_size.len() == 2 && a.sscp_conv_stride_size.len() == 2,
                "sscp kernels",
            ),
            (
                a.conf_attention_chunk_size > 0 && a.conf_attention_context_left > 0,
                "audio attention context",
            ),
            (
                a.vocab_offset + a.vocab_size == t.vocab_size,
                "audio vocabulary ends the text vocabulary",
            ),
            (
                self.vision_vocab_offset <= a.vocab_offset,
                "vision range before the audio range",
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                return Err(invalid(format!("inconsistent config: {what}")));
            }
        }
        // Shared layers read the cache of the last earlier layer of their type.
        for i in n - t.num_kv_shared_layers..n {
            kv_source(t, i)?;
        }
        Ok(())
    }
}

/// The layer whose keys and values layer `i` uses: itself, or for the last
/// `num_kv_shared_layers` layers the last earlier unshared layer of the same type.
pub fn kv_source(t: &TextConfig, i: usize) -> Result<usize> {
    let first_shared = t.num_hidden_layers - t.num_kv_shared_layers;
    if i < first_shared {
        return Ok(i);
    }
    (0..first_shared)
        .rev()
        .find(|&j| t.sliding[j] == t.sliding[i])
        .ok_or_else(|| invalid(format!("shared layer {i} has no earlier layer of its type")))
}

fn text_config(t: &Value) -> Result<TextConfig> {
    let u = |k: &str| -> Result<usize> {
        t.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| invalid(format!("text_config.{k} missing")))
    };
    let f = |k: &str| t.get(k).and_then(Value::as_f64);
    let n = u("num_hidden_layers")?;
    let intermediate_size = match t.get("intermediate_size") {
        Some(Value::Array(a)) => a.iter().map(|x| x.as_u64().unwrap_or(0) as usize).collect(),
        Some(x) => vec![x.as_u64().unwrap_or(0) as usize; n],
        None => return Err(invalid("text_config.intermediate_size missing".into())),
    };
    let sliding = match t.get("layer_types").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .map(|x| x.as_str() == Some("sliding_attention"))
            .collect(),
        None => (0..n).map(|i| (i + 1) % 5 != 0).collect(),
    };
    let activation_sparsity = match t.get("activation_sparsity_pattern") {
        Some(Value::Array(a)) => a.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect(),
        Some(Value::Number(x)) => vec![x.as_f64().unwrap_or(0.0); n],
        _ => {
            let sparse = if n > 10 { 10 } else { 0 };
            (0..n)
                .map(|i| if i < sparse { 0.95 } else { 0.0 })
                .collect()
        }
    };
    let rope = |kind: &str, flat: &str, default: f64| {
        t.pointer(&format!("/rope_parameters/{kind}/rope_theta"))
            .and_then(Value::as_f64)
            .or_else(|| f(flat))
            .unwrap_or(default)
    };
    let hidden_size = u("hidden_size")?;
    let heads = u("num_attention_heads")?;
    Ok(TextConfig {
        vocab_size: u("vocab_size")?,
        vocab_size_per_layer_input: u("vocab_size_per_layer_input")?,
        hidden_size,
        hidden_size_per_layer_input: u("hidden_size_per_layer_input")?,
        intermediate_size,
        num_hidden_layers: n,
        num_attention_heads: heads,
        num_key_value_heads: u("num_key_value_heads")?,
        head_dim: u("head_dim").unwrap_or(hidden_size / heads.max(1)),
        rms_norm_eps: f("rms_norm_eps").unwrap_or(1e-6),
        rope_global: rope("full_attention", "rope_theta", 1_000_000.0),
        rope_local: rope("sliding_attention", "rope_local_base_freq", 10_000.0),
        sliding_window: u("sliding_window").unwrap_or(512),
        sliding,
        final_logit_softcapping: f("final_logit_softcapping"),
        altup_active_idx: u("altup_active_idx").unwrap_or(0),
        altup_correct_scale: t
            .get("altup_correct_scale")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        altup_num_inputs: u("altup_num_inputs").unwrap_or(4),
        num_kv_shared_layers: u("num_kv_shared_layers").unwrap_or(0),
        laurel_rank: u("laurel_rank")?,
        activation_sparsity,
    })
}

fn invalid(m: String) -> GemmaError {
    GemmaError::InvalidModel(m)
}
