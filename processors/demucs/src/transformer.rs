//! The cross-domain transformer at the bottom of HTDemucs: the frequency branch (flattened to
//! `time × freq` tokens with a 2-D sinusoidal position code) and the time branch (1-D code)
//! alternate self-attention layers with layers where each attends to the other. Pre-norm
//! layers with LayerScale and a final GroupNorm(1) over the whole sequence
//! (`t_norm_first`, `t_layer_scale`, `t_norm_out`), GELU feed-forward.

use std::sync::Mutex;

use candle_core::{Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::attention;
use crate::config::HTDemucsConfig;
use crate::linear::Linear;
use crate::token_norm::{Over, TokenNorm};
use crate::Result;

/// `nn.MultiheadAttention` with packed input projections, no dropout, no mask.
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    /// The CPU attention kernels; else candle's ops, as on other devices.
    fused: bool,
}

impl Attention {
    /// `gamma`: the LayerScale applied to this block's output, folded into the output
    /// projection (`x + γ·(yWᵀ + b)` = `x + y(γW)ᵀ + γb`).
    fn load(
        vb: VarBuilder,
        dim: usize,
        heads: usize,
        gamma: Option<&Tensor>,
        fused: bool,
    ) -> Result<Self> {
        let w = vb.get((3 * dim, dim), "in_proj_weight")?;
        let b = vb.get(3 * dim, "in_proj_bias")?;
        let part = |t: &Tensor, i: usize| t.narrow(0, i * dim, dim);
        // The 1/sqrt(head_dim) of scaled dot-product attention is folded into the query
        // projection once here instead of scaling every query.
        let scale = 1.0 / ((dim / heads) as f64).sqrt();
        let (ow, ob) = scaled_out(vb.pp("out_proj"), dim, dim, gamma)?;
        Ok(Self {
            q: Linear::new(&(part(&w, 0)? * scale)?, &(part(&b, 0)? * scale)?, fused)?,
            k: Linear::new(&part(&w, 1)?, &part(&b, 1)?, fused)?,
            v: Linear::new(&part(&w, 2)?, &part(&b, 2)?, fused)?,
            out: Linear::new(&ow, &ob, fused)?,
            heads,
            fused,
        })
    }

    /// `q`: `[B, N, C]`, `kv`: `[B, M, C]` → `[B, N, C]`.
    /// `residual + γ·attention(q, kv)`.
    fn forward_residual(&self, q: &Tensor, kv: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (q, k, v) = (self.q.forward(q)?, self.k.forward(kv)?, self.v.forward(kv)?);
        let y = if self.fused {
            attention::attention(&q, &k, &v, self.heads)?
        } else {
            attention::attention_with(&q, &k, &v, self.heads, attention::Kernel::Candle)?
        };
        self.out.forward_residual(&y, residual)
    }
}

/// GroupNorm with one group over a `[B, T, C]` sequence: statistics over all of T and C,
/// affine per channel (the reference's `MyGroupNorm(1, C)`).
struct SequenceNorm {
    weight: Tensor,
    bias: Tensor,
    /// The CPU kernel.
    fused: Option<TokenNorm>,
}

impl SequenceNorm {
    fn load(vb: VarBuilder, dim: usize, fused: bool) -> Result<Self> {
        let (weight, bias) = (vb.get(dim, "weight")?, vb.get(dim, "bias")?);
        Ok(Self {
            fused: fused
                .then(|| TokenNorm::new(&weight, &bias, 1e-5, Over::Item))
                .transpose()?,
            weight,
            bias,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(n) = &self.fused {
            return n.forward(x);
        }
        let (b, t, c) = x.dims3()?;
        let flat = x.reshape((b, t * c))?;
        let mean = flat.mean_keepdim(1)?;
        let centred = flat.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(1)?;
        let normed = centred
            .broadcast_div(&(var + 1e-5)?.sqrt()?)?
            .reshape((b, t, c))?;
        Ok(normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// A LayerNorm over the channels (eps 1e-5): the CPU kernel, or candle's op elsewhere.
enum Norm {
    Fused(TokenNorm),
    Ops(LayerNorm),
}

impl Norm {
    fn load(vb: VarBuilder, dim: usize, fused: bool) -> Result<Self> {
        Ok(if fused {
            let (w, b) = (vb.get(dim, "weight")?, vb.get(dim, "bias")?);
            Self::Fused(TokenNorm::new(&w, &b, 1e-5, Over::Token)?)
        } else {
            Self::Ops(candle_nn::layer_norm(dim, 1e-5, vb)?)
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Fused(n) => n.forward(x),
            Self::Ops(n) => Ok(n.forward(x)?),
        }
    }
}

struct FeedForward {
    linear1: Linear,
    linear2: Linear,
}

impl FeedForward {
    /// `gamma`: the LayerScale on the block's output, folded into `linear2`.
    fn load(
        vb: &VarBuilder,
        dim: usize,
        hidden: usize,
        gamma: Option<&Tensor>,
        fused: bool,
    ) -> Result<Self> {
        let l1 = vb.pp("linear1");
        let (w2, b2) = scaled_out(vb.pp("linear2"), hidden, dim, gamma)?;
        Ok(Self {
            linear1: Linear::new(
                &l1.get((hidden, dim), "weight")?,
                &l1.get(hidden, "bias")?,
                fused,
            )?,
            linear2: Linear::new(&w2, &b2, fused)?,
        })
    }

    /// `residual + γ·linear2(gelu(linear1(x)))`.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let h = self.linear1.forward_gelu(x)?;
        self.linear2.forward_residual(&h, residual)
    }
}

/// A `[cout, cin]` linear layer's weight and bias with each output scaled by `gamma`.
fn scaled_out(
    vb: VarBuilder,
    cin: usize,
    cout: usize,
    gamma: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (w, b) = (vb.get((cout, cin), "weight")?, vb.get(cout, "bias")?);
    Ok(match gamma {
        Some(g) => (w.broadcast_mul(&g.unsqueeze(1)?)?, (b * g)?),
        None => (w, b),
    })
}

/// One transformer layer: self-attention (`MyTransformerEncoderLayer`) or attention to the
/// other branch (`CrossTransformerEncoderLayer`), both pre-norm.
struct Layer {
    attn: Attention,
    cross: bool,
    norm1: Norm,
    /// Cross layers normalise the other branch with `norm2` and the feed-forward input with
    /// `norm3`; self layers use `norm2` for the feed-forward.
    norm2: Norm,
    norm3: Option<Norm>,
    /// The LayerScales `gamma_1`/`gamma_2` are folded into `attn` and `ff`.
    ff: FeedForward,
    norm_out: Option<SequenceNorm>,
}

impl Layer {
    fn load(vb: VarBuilder, cross: bool, cfg: &HTDemucsConfig, fused: bool) -> Result<Self> {
        let dim = cfg.transformer_dim();
        let hidden = (dim as f64 * cfg.t_hidden_scale) as usize;
        let ln = |name: &str| Norm::load(vb.pp(name), dim, fused);
        let scale = |name: &str| -> Result<Option<Tensor>> {
            if cfg.t_layer_scale {
                Ok(Some(vb.pp(name).get(dim, "scale")?))
            } else {
                Ok(None)
            }
        };
        let attn_name = if cross { "cross_attn" } else { "self_attn" };
        let (gamma_1, gamma_2) = (scale("gamma_1")?, scale("gamma_2")?);
        Ok(Self {
            attn: Attention::load(vb.pp(attn_name), dim, cfg.t_heads, gamma_1.as_ref(), fused)?,
            cross,
            norm1: ln("norm1")?,
            norm2: ln("norm2")?,
            norm3: if cross { Some(ln("norm3")?) } else { None },
            ff: FeedForward::load(&vb, dim, hidden, gamma_2.as_ref(), fused)?,
            norm_out: if cfg.t_norm_out {
                Some(SequenceNorm::load(vb.pp("norm_out"), dim, fused)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor, other: &Tensor) -> Result<Tensor> {
        let q = self.norm1.forward(x)?;
        let (x, ff_norm) = if self.cross {
            let kv = self.norm2.forward(other)?;
            (
                self.attn.forward_residual(&q, &kv, x)?,
                self.norm3.as_ref().unwrap_or(&self.norm2),
            )
        } else {
            (self.attn.forward_residual(&q, &q, x)?, &self.norm2)
        };
        let x = self.ff.forward_residual(&ff_norm.forward(&x)?, &x)?;
        match &self.norm_out {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

/// `CrossTransformerEncoder` with `t_emb="sin"`.
pub struct CrossTransformer {
    norm_in: Option<Norm>,
    norm_in_t: Option<Norm>,
    layers: Vec<Layer>,
    layers_t: Vec<Layer>,
    cross_parity: usize,
    max_period: f64,
    weight_pos: f64,
    /// The scaled position codes of the last input shape `(C, F, T1, T2)`: every segment of
    /// a track has the same shape, and the codes cost a million `sin`/`cos` each time.
    positions: Mutex<Option<Positions>>,
}

/// `(shape, 2-D code of the frequency branch, 1-D code of the time branch)`.
type Positions = ((usize, usize, usize, usize), Tensor, Tensor);

impl CrossTransformer {
    /// `fused`: the CPU kernels for the linear layers (see [`crate::linear`]).
    pub fn load(vb: VarBuilder, cfg: &HTDemucsConfig, fused: bool) -> Result<Self> {
        let dim = cfg.transformer_dim();
        let classic_parity = usize::from(cfg.t_cross_first);
        let mut layers = Vec::new();
        let mut layers_t = Vec::new();
        for i in 0..cfg.t_layers {
            let cross = i % 2 != classic_parity;
            layers.push(Layer::load(
                vb.pp("layers").pp(i.to_string()),
                cross,
                cfg,
                fused,
            )?);
            layers_t.push(Layer::load(
                vb.pp("layers_t").pp(i.to_string()),
                cross,
                cfg,
                fused,
            )?);
        }
        let (norm_in, norm_in_t) = if cfg.t_norm_in {
            (
                Some(Norm::load(vb.pp("norm_in"), dim, fused)?),
                Some(Norm::load(vb.pp("norm_in_t"), dim, fused)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            norm_in,
            norm_in_t,
            layers,
            layers_t,
            cross_parity: 1 - classic_parity,
            max_period: cfg.t_max_period,
            weight_pos: cfg.t_weight_pos_embed,
            positions: Mutex::new(None),
        })
    }

    /// The position codes for this shape, scaled by `weight_pos`, from the cache if it holds
    /// them.
    fn positions(
        &self,
        shape: (usize, usize, usize, usize),
        dev: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let mut cache = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, pos2, pos1)) = cache.as_ref() {
            if *key == shape {
                return Ok((pos2.clone(), pos1.clone()));
            }
        }
        let (c, f, t1, t2) = shape;
        let pos2 = (sin_embedding_2d(c, f, t1, self.max_period, dev)? * self.weight_pos)?;
        let pos1 = (sin_embedding(t2, c, self.max_period, dev)? * self.weight_pos)?;
        *cache = Some((shape, pos2.clone(), pos1.clone()));
        Ok((pos2, pos1))
    }

    /// `x`: `[B, C, F, T1]` (frequency branch), `xt`: `[B, C, T2]` (time branch).
    pub fn forward(&self, x: &Tensor, xt: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, f, t1) = x.dims4()?;
        let t2 = xt.dim(2)?;
        let dev = x.device();
        // Tokens ordered time-major: "b c fr t1 -> b (t1 fr) c".
        let mut x = x.permute((0, 3, 2, 1))?.reshape((b, t1 * f, c))?;
        if let Some(n) = &self.norm_in {
            x = n.forward(&x)?;
        }
        let (pos2, pos1) = self.positions((c, f, t1, t2), dev)?;
        x = x.broadcast_add(&pos2)?;
        let mut xt = xt.transpose(1, 2)?.contiguous()?;
        if let Some(n) = &self.norm_in_t {
            xt = n.forward(&xt)?;
        }
        xt = xt.broadcast_add(&pos1)?;
        for (i, (l, lt)) in self.layers.iter().zip(&self.layers_t).enumerate() {
            if i % 2 == self.cross_parity {
                let old_x = x.clone();
                x = l.forward(&x, &xt)?;
                xt = lt.forward(&xt, &old_x)?;
            } else {
                x = l.forward(&x, &x)?;
                xt = lt.forward(&xt, &xt)?;
            }
        }
        let x = x
            .reshape((b, t1, f, c))?
            .permute((0, 3, 2, 1))?
            .contiguous()?;
        let xt = xt.transpose(1, 2)?.contiguous()?;
        Ok((x, xt))
    }
}

/// `create_sin_embedding`: `[1, T, C]`, cosines then sines.
fn sin_embedding(length: usize, dim: usize, max_period: f64, dev: &Device) -> Result<Tensor> {
    let half = dim / 2;
    // float32 throughout, as the reference computes it.
    let periods: Vec<f32> = (0..half)
        .map(|i| (max_period as f32).powf(i as f32 / (half as f32 - 1.0)))
        .collect();
    let mut v = vec![0f32; length * dim];
    for p in 0..length {
        for (i, period) in periods.iter().enumerate() {
            let phase = p as f32 / period;
            v[p * dim + i] = phase.cos();
            v[p * dim + half + i] = phase.sin();
        }
    }
    Ok(Tensor::from_vec(v, (1, length, dim), dev)?)
}

/// `create_2d_sin_embedding` laid out as the flattened tokens: `[1, T1 * F, C]`, the first half
/// of the channels coding time (width), the second frequency (height), sin/cos interleaved.
fn sin_embedding_2d(
    dim: usize,
    height: usize,
    width: usize,
    max_period: f64,
    dev: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    // torch computes div_term in float32 from exp(); keep the same rounding.
    let div: Vec<f32> = (0..half)
        .step_by(2)
        .map(|i| ((i as f32) * -((max_period.ln() / half as f64) as f32)).exp())
        .collect();
    let mut v = vec![0f32; width * height * dim];
    for t in 0..width {
        for fr in 0..height {
            let base = (t * height + fr) * dim;
            for (j, d) in div.iter().enumerate() {
                let (pw, ph) = (t as f32 * d, fr as f32 * d);
                v[base + 2 * j] = pw.sin();
                v[base + 2 * j + 1] = pw.cos();
                v[base + half + 2 * j] = ph.sin();
                v[base + half + 2 * j + 1] = ph.cos();
            }
        }
    }
    Ok(Tensor::from_vec(v, (1, width * height, dim), dev)?)
}
