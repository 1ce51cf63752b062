//! Gemma 3n's audio encoder (USM-style): two strided 2-D convolutions over the log-mel frames
//! with cumulative group norms (the subsampling front end, 4× in time), then conformer blocks
//! (half-step feed-forward, chunked local self-attention with relative positions and
//! soft-capped logits, a causal depthwise light convolution, half-step feed-forward), then
//! every `conf_reduction_factor`-th frame.

use candle_core::{DType, Device, Tensor, D};

use super::config::AudioConfig;
use super::weights::Weights;
use crate::error::{GemmaError, Result};
use crate::layers::{rms_norm, Linear};

struct ConvBlock {
    weight: Tensor,
    norm: Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
}

struct Ffw {
    pre_norm: Tensor,
    l1: Linear,
    l2: Linear,
    post_norm: Tensor,
}

struct Block {
    ffw_start: Ffw,
    pre_attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    /// softplus(per_dim_scale) · head_dim^-½ / softplus(0), per channel of a head.
    q_scale: Tensor,
    pos_proj: Linear,
    post: Linear,
    post_norm: Tensor,
    lconv_pre_norm: Tensor,
    linear_start: Linear,
    depthwise: Tensor,
    conv_norm: Tensor,
    linear_end: Linear,
    ffw_end: Ffw,
    norm: Tensor,
}

/// The audio encoder.
pub struct AudioEncoder {
    pub config: AudioConfig,
    convs: [ConvBlock; 2],
    input_proj: Linear,
    blocks: Vec<Block>,
    /// Causal local-window validity `[chunk, context]`.
    local_mask: Tensor,
    device: Device,
}

fn lin(w: &Weights, name: &str) -> Result<Linear> {
    Ok(Linear::float(w.get(&format!("{name}.weight"))?))
}

impl AudioEncoder {
    /// Loads `<prefix>.*` (`model.audio_tower` in the multimodal checkpoint).
    pub fn load(w: &Weights, prefix: &str, config: AudioConfig, device: &Device) -> Result<Self> {
        let c = &config;
        let p = |n: &str| format!("{prefix}.{n}");
        let conv = |i: usize| -> Result<ConvBlock> {
            let k = &c.sscp_conv_kernel_size[i];
            let s = &c.sscp_conv_stride_size[i];
            if k.len() != 2 || s.len() != 2 {
                return Err(GemmaError::InvalidModel("sscp kernels are 2-D".into()));
            }
            Ok(ConvBlock {
                weight: w.get(&p(&format!(
                    "subsample_conv_projection.conv_{i}.conv.weight"
                )))?,
                norm: w.get(&p(&format!(
                    "subsample_conv_projection.conv_{i}.norm.weight"
                )))?,
                kernel: (k[0], k[1]),
                stride: (s[0], s[1]),
            })
        };
        let convs = [conv(0)?, conv(1)?];
        let heads = c.conf_num_attention_heads;
        let head_dim = c.hidden_size / heads;
        let softplus = |x: &Tensor| -> Result<Tensor> { Ok((x.exp()? + 1.0)?.log()?) };
        let q_scale_base = (head_dim as f64).powf(-0.5) / std::f64::consts::LN_2;
        let ffw = |b: &str| -> Result<Ffw> {
            Ok(Ffw {
                pre_norm: w.get(&format!("{b}.pre_layer_norm.weight"))?,
                l1: lin(w, &format!("{b}.ffw_layer_1"))?,
                l2: lin(w, &format!("{b}.ffw_layer_2"))?,
                post_norm: w.get(&format!("{b}.post_layer_norm.weight"))?,
            })
        };
        let mut blocks = Vec::with_capacity(c.conf_num_hidden_layers);
        for i in 0..c.conf_num_hidden_layers {
            let b = p(&format!("conformer.{i}"));
            let a = format!("{b}.attention");
            let per_dim = w.get(&format!("{a}.attn.per_dim_scale"))?;
            blocks.push(Block {
                ffw_start: ffw(&format!("{b}.ffw_layer_start"))?,
                pre_attn_norm: w.get(&format!("{a}.pre_attn_norm.weight"))?,
                q: lin(w, &format!("{a}.attn.q_proj"))?,
                k: lin(w, &format!("{a}.attn.k_proj"))?,
                v: lin(w, &format!("{a}.attn.v_proj"))?,
                q_scale: (softplus(&per_dim)? * q_scale_base)?,
                pos_proj: lin(w, &format!("{a}.attn.relative_position_embedding.pos_proj"))?,
                post: lin(w, &format!("{a}.post"))?,
                post_norm: w.get(&format!("{a}.post_norm.weight"))?,
                lconv_pre_norm: w.get(&format!("{b}.lconv1d.pre_layer_norm.weight"))?,
                linear_start: lin(w, &format!("{b}.lconv1d.linear_start"))?,
                depthwise: w.get(&format!("{b}.lconv1d.depthwise_conv1d.weight"))?,
                conv_norm: w.get(&format!("{b}.lconv1d.conv_norm.weight"))?,
                linear_end: lin(w, &format!("{b}.lconv1d.linear_end"))?,
                ffw_end: ffw(&format!("{b}.ffw_layer_end"))?,
                norm: w.get(&format!("{b}.norm.weight"))?,
            });
        }
        let (chunk, left) = (
            c.conf_attention_chunk_size,
            c.conf_attention_context_left - 1,
        );
        let context = chunk + left + c.conf_attention_context_right;
        // Query w of a block sees context slots w ..= w + left + right.
        let mask: Vec<u8> = (0..chunk)
            .flat_map(|q| {
                (0..context).map(move |k| {
                    u8::from(k >= q && k <= q + left + c.conf_attention_context_right)
                })
            })
            .collect();
        Ok(Self {
            input_proj: lin(w, &p("subsample_conv_projection.input_proj_linear"))?,
            local_mask: Tensor::from_vec(mask, (chunk, context), device)?,
            convs,
            blocks,
            config,
            device: device.clone(),
        })
    }

    /// Encodes log-mel frames `[b, frames, mels]` whose padding is `true` in `pad`
    /// `[b, frames]` (u8). Returns `[b, tokens, hidden]` and the tokens' padding `[b, tokens]`.
    pub fn forward(&self, mel: &Tensor, pad: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let mut x = mel.unsqueeze(1)?;
        for conv in &self.convs {
            x = self.conv_block(conv, &x)?;
        }
        // [b, ch, t, f] → [b, t, f·ch] (frequency major).
        let (b, ch, t, f) = x.dims4()?;
        let x = x.permute((0, 2, 3, 1))?.reshape((b, t, f * ch))?;
        let mut x = self.input_proj.forward(&x)?;
        let stride: usize = c.sscp_conv_stride_size.iter().map(|s| s[0]).product();
        let frames = pad.dim(1)?;
        let idx: Vec<u32> = (0..t)
            .map(|i| (i * stride).min(frames - 1) as u32)
            .collect();
        let mut pad = pad.index_select(&Tensor::new(idx.as_slice(), &self.device)?, 1)?;
        for blk in &self.blocks {
            x = self.block(blk, &x, &pad)?;
        }
        if c.conf_reduction_factor > 1 {
            let keep: Vec<u32> = (0..t)
                .step_by(c.conf_reduction_factor)
                .map(|i| i as u32)
                .collect();
            let keep = Tensor::new(keep.as_slice(), &self.device)?;
            x = x.index_select(&keep, 1)?;
            pad = pad.index_select(&keep, 1)?;
        }
        let valid = (1.0 - pad.to_dtype(DType::F32)?)?.unsqueeze(D::Minus1)?;
        Ok((x.broadcast_mul(&valid)?, pad))
    }

    fn conv_block(&self, conv: &ConvBlock, x: &Tensor) -> Result<Tensor> {
        // Time padded after (reverse causal), frequency by one on each side.
        let x = x
            .pad_with_zeros(2, 0, conv.kernel.0 - 1)?
            .pad_with_zeros(3, 1, 1)?;
        let y = if conv.stride.0 == conv.stride.1 {
            x.conv2d(&conv.weight, 0, conv.stride.0, 1, 1)?
        } else {
            return Err(GemmaError::InvalidModel(
                "unequal sscp strides are not supported".into(),
            ));
        };
        // Cumulative group norm over (frequency, channel), statistics accumulated over time.
        let y = y.permute((0, 2, 3, 1))?.contiguous()?; // [b, t, f, ch]
        let (_, t, f, ch) = y.dims4()?;
        let n = (f * ch) as f64;
        let counts: Vec<f32> = (1..=t).map(|i| (i as f64 * n) as f32).collect();
        let counts = Tensor::from_vec(counts, (1, t, 1, 1), &self.device)?;
        let sum = y.sum_keepdim(3)?.sum_keepdim(2)?.cumsum(1)?;
        let mean = sum.broadcast_div(&counts)?;
        let centred = y.broadcast_sub(&mean)?;
        let var = centred
            .sqr()?
            .sum_keepdim(3)?
            .sum_keepdim(2)?
            .cumsum(1)?
            .broadcast_div(&counts)?;
        let normed = centred
            .broadcast_div(&(var + self.config.sscp_conv_group_norm_eps)?.sqrt()?)?
            .broadcast_mul(&conv.norm)?;
        Ok(normed.permute((0, 3, 1, 2))?.relu()?)
    }

    fn clip(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.config.gradient_clipping.min(f32::MAX as f64);
        Ok(x.clamp(-g, g)?)
    }

    fn ffw(&self, f: &Ffw, x: &Tensor) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps;
        let h = rms_norm(&self.clip(x)?, Some(&f.pre_norm), eps)?;
        let h = f.l2.forward(&candle_nn::ops::silu(&f.l1.forward(&h)?)?)?;
        let h = rms_norm(&self.clip(&h)?, Some(&f.post_norm), eps)?;
        Ok((x + (h * self.config.conf_residual_weight)?)?)
    }

    fn block(&self, blk: &Block, x: &Tensor, pad: &Tensor) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps;
        let x = self.ffw(&blk.ffw_start, x)?;
        let n = rms_norm(&self.clip(&x)?, Some(&blk.pre_attn_norm), eps)?;
        let a = self.attention(blk, &n, pad)?;
        let a = self.clip(&blk.post.forward(&a)?)?;
        let x = (&x + rms_norm(&a, Some(&blk.post_norm), eps)?)?;
        let valid = (1.0 - pad.to_dtype(DType::F32)?)?.unsqueeze(D::Minus1)?;
        let x = x.broadcast_mul(&valid)?;
        // Light convolution: GLU, causal depthwise conv, norm, SiLU.
        let h = blk
            .linear_start
            .forward(&rms_norm(&x, Some(&blk.lconv_pre_norm), eps)?)?;
        let d = h.dim(D::Minus1)? / 2;
        let h =
            (h.narrow(D::Minus1, 0, d)? * candle_nn::ops::sigmoid(&h.narrow(D::Minus1, d, d)?)?)?;
        let k = blk.depthwise.dim(D::Minus1)?;
        let h = h.transpose(1, 2)?.pad_with_zeros(2, k - 1, 0)?;
        let h = h.conv1d(&blk.depthwise, 0, 1, 1, d)?.transpose(1, 2)?;
        let h = rms_norm(&self.clip(&h)?, Some(&blk.conv_norm), eps)?;
        let h = blk.linear_end.forward(&candle_nn::ops::silu(&h)?)?;
        let x = (h + x)?;
        let x = self.ffw(&blk.ffw_end, &x)?;
        rms_norm(&self.clip(&x)?, Some(&blk.norm), eps)
    }

    /// Chunked local attention: queries in blocks of `chunk` frames, each seeing its own frame
    /// and `context_left − 1` before it; logits = content + relative-position terms.
    fn attention(&self, blk: &Block, x: &Tensor, pad: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, dim) = x.dims3()?;
        let heads = c.conf_num_attention_heads;
        let hd = dim / heads;
        let w = c.conf_attention_chunk_size;
        let left = c.conf_attention_context_left - 1;
        let right = c.conf_attention_context_right;
        let ctx = w + left + right;
        let u = t.div_ceil(w);
        let split = |y: Tensor| -> Result<Tensor> { Ok(y.reshape((b, t, heads, hd))?) };
        let q = split(blk.q.forward(x)?)?.broadcast_mul(&blk.q_scale)?;
        let k = split(blk.k.forward(x)?)?;
        let v = split(blk.v.forward(x)?)?;
        // Query blocks [b, heads, u, w, hd].
        let qb = q
            .pad_with_zeros(1, 0, u * w - t)?
            .reshape((b, u, w, heads, hd))?
            .permute((0, 3, 1, 2, 4))?
            .contiguous()?;
        // Key/value context blocks [b, heads, u, ctx, hd].
        let context = |y: &Tensor| -> Result<Tensor> {
            let y = y.pad_with_zeros(1, left, right + w - 1)?;
            let blocks: Vec<Tensor> = (0..u)
                .map(|i| y.narrow(1, i * w, ctx))
                .collect::<candle_core::Result<_>>()?;
            Ok(Tensor::stack(&blocks, 1)?)
        };
        let kb = context(&k)?.permute((0, 3, 1, 2, 4))?.contiguous()?;
        let vb = context(&v)?.permute((0, 3, 1, 2, 4))?.contiguous()?;
        let rows = b * heads * u;
        let ac = qb
            .reshape((rows, w, hd))?
            .matmul(&kb.reshape((rows, ctx, hd))?.t()?)?
            .reshape((b, heads, u, w, ctx))?;
        // Relative positions left, left−1, …, −right as sinusoids through pos_proj.
        let span = left + right + 1;
        let half = dim / 2;
        let inc = (1.0e4f64).ln() / (half.max(2) - 1) as f64;
        let inv: Vec<f32> = (0..half)
            .map(|i| (-(i as f64) * inc).exp() as f32)
            .collect();
        let mut sig = Vec::with_capacity(span * dim);
        for f in 0..span {
            let pos = left as f32 - f as f32;
            sig.extend(inv.iter().map(|&s| (pos * s).sin()));
            sig.extend(inv.iter().map(|&s| (pos * s).cos()));
        }
        let sig = Tensor::from_vec(sig, (span, dim), &self.device)?;
        let pe = blk
            .pos_proj
            .forward(&sig)?
            .reshape((span, heads, hd))?
            .permute((1, 2, 0))?; // [heads, hd, span]
        let bd = qb
            .reshape((b, heads, u * w, hd))?
            .broadcast_matmul(&pe.unsqueeze(0)?.contiguous()?)?
            .reshape((b, heads, u, w, span))?;
        // The reference's relative shift: slot c of query w takes offset c − w.
        let bd = bd
            .pad_with_zeros(4, 0, ctx + 1 - span)?
            .reshape((b, heads, u, w * (ctx + 1)))?
            .narrow(3, 0, w * ctx)?
            .reshape((b, heads, u, w, ctx))?;
        let cap = c.conf_attention_logit_cap;
        let logits = ((((ac + bd)? / cap)?.tanh()?) * cap)?;
        // Keys must be real frames (not padding) and inside the causal window.
        let valid = (1.0 - pad.to_dtype(DType::F32)?)?;
        let vblocks = context(&valid.unsqueeze(D::Minus1)?)?.squeeze(D::Minus1)?; // [b, u, ctx]
        let cond = vblocks
            .unsqueeze(1)?
            .unsqueeze(3)?
            .broadcast_mul(&self.local_mask.to_dtype(DType::F32)?)?
            .ne(0f32)?
            .broadcast_as(logits.shape())?;
        let floor = Tensor::full(f32::MIN, logits.shape(), &self.device)?;
        let logits = cond.where_cond(&logits, &floor)?;
        let p = candle_nn::ops::softmax_last_dim(&logits)?;
        let o = p
            .reshape((rows, w, ctx))?
            .matmul(&vb.reshape((rows, ctx, hd))?)?
            .reshape((b, heads, u, w, hd))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, u * w, heads * hd))?
            .narrow(1, 0, t)?;
        Ok(o)
    }
}
