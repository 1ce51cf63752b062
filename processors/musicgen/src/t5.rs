//! The T5 encoder (`T5EncoderModel`) that turns the prompt into MusicGen's conditioning:
//! RMS-style layer norms without bias, unscaled attention with a learned bias per relative
//! position bucket (computed in the first block and shared by all), ReLU feed-forward blocks.
//! candle ops, any device; it runs once per generation.

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::config::T5Config;
use crate::Result;

const PREFIX: &str = "text_encoder";

struct Block {
    norm1: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm2: Tensor,
    wi: Linear,
    wo: Linear,
}

pub struct T5Encoder {
    cfg: T5Config,
    device: Device,
    embed: Tensor,
    relative_bias: Tensor,
    blocks: Vec<Block>,
    final_norm: Tensor,
}

impl T5Encoder {
    pub fn load(vb: &VarBuilder, cfg: &T5Config) -> Result<Self> {
        let d = cfg.d_model;
        let inner = cfg.num_heads * cfg.d_kv;
        let lin = |shape: (usize, usize), name: String| -> Result<Linear> {
            Ok(Linear::new(vb.get(shape, &name)?, None))
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = format!("{PREFIX}.encoder.block.{i}.layer");
            let a = format!("{p}.0.SelfAttention");
            blocks.push(Block {
                norm1: vb.get(d, &format!("{p}.0.layer_norm.weight"))?,
                q: lin((inner, d), format!("{a}.q.weight"))?,
                k: lin((inner, d), format!("{a}.k.weight"))?,
                v: lin((inner, d), format!("{a}.v.weight"))?,
                o: lin((d, inner), format!("{a}.o.weight"))?,
                norm2: vb.get(d, &format!("{p}.1.layer_norm.weight"))?,
                wi: lin((cfg.d_ff, d), format!("{p}.1.DenseReluDense.wi.weight"))?,
                wo: lin((d, cfg.d_ff), format!("{p}.1.DenseReluDense.wo.weight"))?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            device: vb.device().clone(),
            embed: vb.get((cfg.vocab_size, d), &format!("{PREFIX}.shared.weight"))?,
            relative_bias: vb.get(
                (cfg.relative_attention_num_buckets, cfg.num_heads),
                &format!(
                    "{PREFIX}.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
                ),
            )?,
            blocks,
            final_norm: vb.get(d, &format!("{PREFIX}.encoder.final_layer_norm.weight"))?,
        })
    }

    /// Hidden states `[1, len, d_model]` of one prompt (no padding, so no mask).
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(crate::MusicgenError::Tokenizer(format!(
                "token id {bad} is outside the text encoder's {} ids",
                self.cfg.vocab_size
            )));
        }
        let n = ids.len();
        let ids_t = Tensor::from_slice(ids, n, &self.device)?;
        let mut x = self.embed.index_select(&ids_t, 0)?.unsqueeze(0)?;
        let bias = self.position_bias(n)?;
        let (h, dk) = (self.cfg.num_heads, self.cfg.d_kv);
        let eps = self.cfg.layer_norm_epsilon;
        for b in &self.blocks {
            let y = rms_norm(&x, &b.norm1, eps)?;
            let split = |t: Tensor| -> Result<Tensor> {
                Ok(t.reshape((1, n, h, dk))?.transpose(1, 2)?.contiguous()?)
            };
            let q = split(b.q.forward(&y)?)?;
            let k = split(b.k.forward(&y)?)?;
            let v = split(b.v.forward(&y)?)?;
            let scores = q.matmul(&k.t()?.contiguous()?)?.broadcast_add(&bias)?;
            let p = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = p.matmul(&v)?.transpose(1, 2)?.reshape((1, n, h * dk))?;
            x = (x + b.o.forward(&ctx)?)?;
            let y = rms_norm(&x, &b.norm2, eps)?;
            x = (x + b.wo.forward(&b.wi.forward(&y)?.relu()?)?)?;
        }
        rms_norm(&x, &self.final_norm, eps)
    }

    /// `[1, heads, n, n]`: the learned bias of each query/key pair's relative-position bucket.
    fn position_bias(&self, n: usize) -> Result<Tensor> {
        let c = &self.cfg;
        let buckets: Vec<u32> = (0..n)
            .flat_map(|i| {
                (0..n).map(move |j| {
                    relative_bucket(
                        j as i64 - i as i64,
                        c.relative_attention_num_buckets,
                        c.relative_attention_max_distance,
                    )
                })
            })
            .collect();
        let idx = Tensor::from_vec(buckets, n * n, &self.device)?;
        let bias = self.relative_bias.index_select(&idx, 0)?; // [n·n, heads]
        Ok(bias
            .reshape((n, n, c.num_heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()?)
    }
}

/// T5's bidirectional bucket of `relative = key - query`: half the buckets per direction,
/// exact below a quarter of them, then logarithmic up to `max_distance`. Float32 steps as the
/// reference computes them, so that boundaries fall the same way.
pub fn relative_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if relative > 0 { half } else { 0 };
    let n = relative.abs();
    let max_exact = half / 2;
    if n < max_exact {
        bucket += n;
    } else {
        let log_ratio = (n as f32 / max_exact as f32).ln();
        let span = (max_distance as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + (log_ratio / span * (half - max_exact) as f32) as i64;
        bucket += large.min(half - 1);
    }
    bucket as u32
}

/// T5's layer norm: scale by the root mean square (no mean, no bias), statistics in float32.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    let y = x.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(y.broadcast_mul(w)?)
}
