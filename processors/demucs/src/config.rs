//! The HTDemucs hyper-parameters that matter at inference, named as in the reference's
//! `HTDemucs.__init__` so a checkpoint's `kwargs` deserialize straight into them. Training-only
//! knobs (dropout, weight decay, CAPE augmentation, sparse attention) are not represented: the
//! loader rejects configurations that need them.

use serde::{Deserialize, Serialize};

/// Inference-relevant HTDemucs hyper-parameters. Defaults are the reference's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HTDemucsConfig {
    pub sources: Vec<String>,
    pub audio_channels: usize,
    pub channels: usize,
    pub channels_time: Option<usize>,
    pub growth: usize,
    pub nfft: usize,
    pub cac: bool,
    pub depth: usize,
    pub rewrite: bool,
    pub multi_freqs: Vec<f64>,
    pub freq_emb: f64,
    pub emb_scale: f64,
    pub emb_smooth: bool,
    pub kernel_size: usize,
    pub time_stride: usize,
    pub stride: usize,
    pub context: usize,
    pub context_enc: usize,
    pub norm_starts: usize,
    pub norm_groups: usize,
    pub dconv_mode: usize,
    pub dconv_depth: usize,
    pub dconv_comp: usize,
    pub bottom_channels: usize,
    pub t_layers: usize,
    pub t_emb: String,
    pub t_hidden_scale: f64,
    pub t_heads: usize,
    pub t_norm_in: bool,
    pub t_norm_in_group: bool,
    pub t_group_norm: bool,
    pub t_norm_first: bool,
    pub t_norm_out: bool,
    pub t_max_period: f64,
    pub t_layer_scale: bool,
    pub t_gelu: bool,
    pub t_weight_pos_embed: f64,
    pub t_sin_random_shift: usize,
    pub t_cross_first: bool,
    pub t_sparse_self_attn: bool,
    pub t_sparse_cross_attn: bool,
    pub wiener_iters: usize,
    pub samplerate: u32,
    /// Training segment in seconds (39/5 for the released models); inference pads each chunk
    /// to exactly this length.
    pub segment: f64,
    pub use_train_segment: bool,
}

impl Default for HTDemucsConfig {
    fn default() -> Self {
        Self {
            sources: ["drums", "bass", "other", "vocals"]
                .map(String::from)
                .to_vec(),
            audio_channels: 2,
            channels: 48,
            channels_time: None,
            growth: 2,
            nfft: 4096,
            cac: true,
            depth: 4,
            rewrite: true,
            multi_freqs: Vec::new(),
            freq_emb: 0.2,
            emb_scale: 10.0,
            emb_smooth: true,
            kernel_size: 8,
            time_stride: 2,
            stride: 4,
            context: 1,
            context_enc: 0,
            norm_starts: 4,
            norm_groups: 4,
            dconv_mode: 1,
            dconv_depth: 2,
            dconv_comp: 8,
            bottom_channels: 0,
            t_layers: 5,
            t_emb: "sin".into(),
            t_hidden_scale: 4.0,
            t_heads: 8,
            t_norm_in: true,
            t_norm_in_group: false,
            t_group_norm: false,
            t_norm_first: true,
            t_norm_out: true,
            t_max_period: 10000.0,
            t_layer_scale: true,
            t_gelu: true,
            t_weight_pos_embed: 1.0,
            t_sin_random_shift: 0,
            t_cross_first: false,
            t_sparse_self_attn: false,
            t_sparse_cross_attn: false,
            wiener_iters: 0,
            samplerate: 44_100,
            segment: 10.0,
            use_train_segment: true,
        }
    }
}

impl HTDemucsConfig {
    /// The released `htdemucs` (4 sources) and each member of the `htdemucs_ft` bag.
    pub fn htdemucs() -> Self {
        Self {
            bottom_channels: 512,
            dconv_mode: 3,
            segment: 7.8,
            ..Self::default()
        }
    }

    /// The released `htdemucs_6s` (adds guitar and piano; no bottom channels).
    pub fn htdemucs_6s() -> Self {
        Self {
            sources: ["drums", "bass", "other", "vocals", "guitar", "piano"]
                .map(String::from)
                .to_vec(),
            bottom_channels: 0,
            dconv_mode: 3,
            segment: 7.8,
            ..Self::default()
        }
    }

    /// Samples per model call: the training segment at the model's rate.
    pub fn segment_samples(&self) -> usize {
        (self.segment * f64::from(self.samplerate)) as usize
    }

    /// Rejects what this implementation does not cover, with the reason.
    pub fn validate(&self) -> Result<(), String> {
        let unsupported = [
            (
                !self.cac,
                "cac=false (magnitude masking / Wiener filtering)",
            ),
            (!self.multi_freqs.is_empty(), "multi_freqs (MultiWrap)"),
            (self.t_emb != "sin", "t_emb other than \"sin\""),
            (
                self.t_sparse_self_attn || self.t_sparse_cross_attn,
                "sparse attention",
            ),
            (
                self.t_norm_in_group || self.t_group_norm,
                "group-norm transformer variants",
            ),
            (!self.t_norm_first, "t_norm_first=false"),
            (self.wiener_iters != 0, "wiener_iters"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(bad, _)| *bad) {
            return Err(format!("unsupported HTDemucs option: {what}"));
        }
        if self.sources.is_empty() || self.audio_channels == 0 {
            return Err("sources and audio_channels must not be empty".into());
        }
        if self.nfft % 4 != 0 || self.segment <= 0.0 {
            return Err("nfft must be a multiple of 4 and segment positive".into());
        }
        let dim = self.transformer_dim();
        if self.t_layers > 0 && (dim % self.t_heads != 0 || dim % 4 != 0) {
            return Err(format!(
                "transformer width {dim} must divide by t_heads {} and by 4",
                self.t_heads
            ));
        }
        Ok(())
    }

    /// Channels at the bottom of the encoders (before any bottom up-sampler).
    pub fn bottom_width(&self) -> usize {
        self.channels * self.growth.pow(self.depth as u32 - 1)
    }

    /// Width of the cross-domain transformer.
    pub fn transformer_dim(&self) -> usize {
        if self.bottom_channels > 0 {
            self.bottom_channels
        } else {
            self.bottom_width()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_kwargs_deserialize() {
        HTDemucsConfig::htdemucs().validate().unwrap();
        HTDemucsConfig::htdemucs_6s().validate().unwrap();
        assert_eq!(HTDemucsConfig::htdemucs().segment_samples(), 343_980);
        let c: HTDemucsConfig =
            serde_json::from_str(r#"{"sources":["a","b"],"channels":4,"bottom_channels":16}"#)
                .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.depth, 4);
        assert_eq!(c.transformer_dim(), 16);
        let bad = HTDemucsConfig {
            t_emb: "cape".into(),
            ..HTDemucsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("t_emb"));
    }
}
