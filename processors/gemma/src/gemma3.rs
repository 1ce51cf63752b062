//! The Gemma 3 text decoder from a GGUF file (llama.cpp's `gemma3` layout), the model behind
//! the `gemma3-270m` variation.
//!
//! Written here rather than taken from candle-transformers: that crate's quantised Gemma 3
//! returns only the last position's logits and has no float path, and the fidelity test needs
//! both (the float path is compared with the reference tightly, the quantised one within the
//! activation-quantisation error); it would also build the whole model zoo for ~200 lines.
//!
//! llama.cpp's converter stores Gemma's RMS-norm weights as `1 + w`, so they multiply as is.

use std::path::Path;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{Device, Tensor};

use crate::error::{GemmaError, Result};
use crate::layers::{attention, causal_mask, rms_norm, rope, KvCache, Linear, Rope};
use crate::spm::SpmTokenizer;

/// Sizes and constants of a Gemma 3 text model, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    pub rope_global: f64,
    pub rope_local: f64,
    pub sliding_window: usize,
    /// Every `pattern`-th layer attends globally, the others within the window.
    pub pattern: usize,
    /// Queries are scaled by `query_pre_attn_scalar^-1/2`.
    pub query_pre_attn_scalar: f64,
    pub final_softcap: Option<f64>,
    pub attn_softcap: Option<f64>,
}

impl Gemma3Config {
    fn from_gguf(c: &gguf_file::Content) -> Result<Self> {
        let md = &c.metadata;
        let get = |k: &str| {
            md.get(&format!("gemma3.{k}"))
                .ok_or_else(|| GemmaError::InvalidModel(format!("GGUF has no gemma3.{k}")))
        };
        let u = |k: &str| -> Result<usize> {
            Ok(get(k)?
                .to_u32()
                .map_err(|e| GemmaError::InvalidModel(format!("gemma3.{k}: {e}")))?
                as usize)
        };
        let f = |k: &str| -> Option<f64> {
            md.get(&format!("gemma3.{k}"))?.to_f32().ok().map(f64::from)
        };
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "gemma3" {
            return Err(GemmaError::InvalidModel(format!(
                "GGUF architecture is {arch:?}, not gemma3"
            )));
        }
        let heads = u("attention.head_count")?;
        let head_dim = u("attention.key_length")?;
        let vocab = c
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| GemmaError::InvalidModel("GGUF has no token_embd.weight".into()))?
            .shape
            .dims()[0];
        Ok(Self {
            vocab,
            hidden: u("embedding_length")?,
            layers: u("block_count")?,
            heads,
            kv_heads: u("attention.head_count_kv")?,
            head_dim,
            eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            rope_global: f("rope.freq_base").unwrap_or(1_000_000.0),
            rope_local: f("rope.local.freq_base").unwrap_or(10_000.0),
            sliding_window: u("attention.sliding_window").unwrap_or(512),
            pattern: 6,
            // Gemma 3's released sizes scale queries by head_dim^-1/2 except 27B (hidden/heads).
            query_pre_attn_scalar: head_dim as f64,
            final_softcap: f("final_logit_softcapping"),
            attn_softcap: f("attn_logit_softcapping"),
        })
    }

    fn is_sliding(&self, layer: usize) -> bool {
        !(layer + 1).is_multiple_of(self.pattern)
    }
}

struct Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Tensor,
}

/// How GGUF weights are multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Quantised weights, activations quantised per block (llama.cpp's arithmetic; fast).
    #[default]
    Quantized,
    /// Weights dequantised to float32 at load (slow; the exact arithmetic of the reference).
    Dequantized,
}

/// A loaded Gemma 3 text model.
pub struct Gemma3 {
    pub config: Gemma3Config,
    embed: QTensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    rope_local: Rope,
    rope_global: Rope,
    device: Device,
}

impl Gemma3 {
    /// Loads the model and its tokenizer from a GGUF file.
    pub fn load(
        path: &Path,
        precision: Precision,
        device: &Device,
    ) -> Result<(Self, SpmTokenizer)> {
        let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GemmaError::WeightsMissing {
                path: path.to_path_buf(),
                hint: "fetch it with scripts/gemma/fetch-weights.sh".into(),
            },
            _ => GemmaError::Io(e),
        })?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| GemmaError::InvalidModel(format!("{}: {e}", path.display())))?;
        let config = Gemma3Config::from_gguf(&content)?;
        let tokenizer = SpmTokenizer::from_gguf(&content)?;
        let deq = precision == Precision::Dequantized;
        let mut tensor = |name: &str| -> Result<QTensor> {
            content
                .tensor(&mut file, name, device)
                .map_err(|e| GemmaError::InvalidModel(format!("{name}: {e}")))
        };
        let embed = tensor("token_embd.weight")?;
        // Tied output: the embedding matrix is the unembedding.
        let lm_head = Linear::gguf(tensor("token_embd.weight")?, deq, device)?;
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut lin = |n: &str| -> Result<Linear> {
                Linear::gguf(tensor(&format!("blk.{i}.{n}.weight"))?, deq, device)
            };
            let (q, k, v, o) = (
                lin("attn_q")?,
                lin("attn_k")?,
                lin("attn_v")?,
                lin("attn_output")?,
            );
            let (gate, up, down) = (lin("ffn_gate")?, lin("ffn_up")?, lin("ffn_down")?);
            let mut vec = |n: &str| -> Result<Tensor> {
                Ok(tensor(&format!("blk.{i}.{n}.weight"))?.dequantize(device)?)
            };
            layers.push(Layer {
                attn_norm: vec("attn_norm")?,
                q_norm: vec("attn_q_norm")?,
                k_norm: vec("attn_k_norm")?,
                post_attn_norm: vec("post_attention_norm")?,
                ffn_norm: vec("ffn_norm")?,
                post_ffn_norm: vec("post_ffw_norm")?,
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
            });
        }
        if tokenizer.vocab_size() != config.vocab {
            return Err(GemmaError::InvalidModel(format!(
                "tokenizer has {} tokens, embedding {}",
                tokenizer.vocab_size(),
                config.vocab
            )));
        }
        let model = Self {
            rope_local: Rope::new(config.head_dim, config.rope_local),
            rope_global: Rope::new(config.head_dim, config.rope_global),
            config,
            embed,
            layers,
            norm,
            lm_head,
            device: device.clone(),
        };
        Ok((model, tokenizer))
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.layers)
    }

    /// Runs `ids` after what `cache` holds; returns logits `[n, vocab]` for the last `n`
    /// positions (`n` = 1 when generating, all of them to score a text).
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache, last: usize) -> Result<Tensor> {
        let c = &self.config;
        if ids.is_empty() {
            return Err(GemmaError::InvalidInput("no tokens".into()));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= c.vocab) {
            return Err(GemmaError::InvalidInput(format!(
                "token {bad} outside the vocabulary"
            )));
        }
        let t = ids.len();
        let start = cache.len;
        let ids_t = Tensor::new(ids, &self.device)?;
        let mut x = (self.embed.embedding(&ids_t)? * (c.hidden as f64).sqrt())?.unsqueeze(0)?;
        let (cos_l, sin_l) = self.rope_local.tables(start, t, &self.device)?;
        let (cos_g, sin_g) = self.rope_global.tables(start, t, &self.device)?;
        let mask_l = causal_mask(start, t, Some(c.sliding_window), &self.device)?;
        let mask_g = causal_mask(start, t, None, &self.device)?;
        let scale = c.query_pre_attn_scalar.powf(-0.5);
        for (i, l) in self.layers.iter().enumerate() {
            let sliding = c.is_sliding(i);
            let (cos, sin, mask) = if sliding {
                (&cos_l, &sin_l, &mask_l)
            } else {
                (&cos_g, &sin_g, &mask_g)
            };
            let h = rms_norm(&x, Some(&l.attn_norm), c.eps)?;
            let heads = |lin: &Linear, n: usize, norm: &Tensor| -> Result<Tensor> {
                let y = lin.forward(&h)?.reshape((1, t, n, c.head_dim))?;
                let y = rms_norm(&y, Some(norm), c.eps)?.transpose(1, 2)?;
                rope(&y, cos, sin)
            };
            let q = heads(&l.q, c.heads, &l.q_norm)?;
            let k = heads(&l.k, c.kv_heads, &l.k_norm)?;
            let v =
                l.v.forward(&h)?
                    .reshape((1, t, c.kv_heads, c.head_dim))?
                    .transpose(1, 2)?;
            let (k, v) = cache.append(i, k, v.contiguous()?)?;
            let a = attention(&q, &k, &v, mask, scale, c.attn_softcap)?;
            let a = rms_norm(&l.o.forward(&a)?, Some(&l.post_attn_norm), c.eps)?;
            x = (x + a)?;
            let h = rms_norm(&x, Some(&l.ffn_norm), c.eps)?;
            let m = (l.gate.forward(&h)?.gelu()? * l.up.forward(&h)?)?;
            let m = rms_norm(&l.down.forward(&m)?, Some(&l.post_ffn_norm), c.eps)?;
            x = (x + m)?;
        }
        cache.len += t;
        let n = last.clamp(1, t);
        let x = rms_norm(&x.narrow(1, t - n, n)?, Some(&self.norm), c.eps)?;
        let mut logits = self.lm_head.forward(&x)?.squeeze(0)?;
        if let Some(cap) = c.final_softcap {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        Ok(logits)
    }
}
