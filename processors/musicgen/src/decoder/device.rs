//! The decoder as candle ops, for devices other than the CPU (CUDA). Keys and values go into
//! caches allocated for the whole session (`slice_set`), so a step neither grows nor copies
//! them. Loaded on the CPU by the tests, which hold it to the same fixtures as [`super::cpu`].

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use super::{CrossStates, LN_EPS, PREFIX};
use crate::config::DecoderConfig;
use crate::Result;

struct Attn {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl Attn {
    fn load(vb: &VarBuilder, d: usize, p: &str) -> Result<Self> {
        let lin = |n: &str| -> Result<Linear> {
            Ok(Linear::new(
                vb.get((d, d), &format!("{p}.{n}.weight"))?,
                None,
            ))
        };
        Ok(Self {
            q: lin("q_proj")?,
            k: lin("k_proj")?,
            v: lin("v_proj")?,
            out: lin("out_proj")?,
        })
    }
}

struct Layer {
    norm1: LayerNorm,
    attn: Attn,
    cross: Option<(LayerNorm, Attn)>,
    norm3: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub struct Layers {
    device: Device,
    d: usize,
    heads: usize,
    layers: Vec<Layer>,
    norm: LayerNorm,
    /// Codebook heads stacked, `(codebooks · vocab) × hidden`.
    lm: Linear,
}

pub struct Cache {
    /// `[rows, heads, capacity, head_dim]` per layer.
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Cross-attention keys/values per layer, `[1, heads, len, head_dim]`, and a `[rows, 1, 1]`
    /// mask of the rows that attend.
    cross: Vec<(Tensor, Tensor)>,
    cross_mask: Option<Tensor>,
}

fn norm(vb: &VarBuilder, d: usize, name: &str) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(d, &format!("{name}.weight"))?,
        vb.get(d, &format!("{name}.bias"))?,
        f64::from(LN_EPS),
    ))
}

impl Layers {
    pub fn load(vb: &VarBuilder, cfg: &DecoderConfig, cross: bool) -> Result<Self> {
        let d = cfg.hidden_size;
        let f = cfg.ffn_dim;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{PREFIX}.layers.{i}");
            let cross = if cross {
                Some((
                    norm(vb, d, &format!("{p}.encoder_attn_layer_norm"))?,
                    Attn::load(vb, d, &format!("{p}.encoder_attn"))?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                norm1: norm(vb, d, &format!("{p}.self_attn_layer_norm"))?,
                attn: Attn::load(vb, d, &format!("{p}.self_attn"))?,
                cross,
                norm3: norm(vb, d, &format!("{p}.final_layer_norm"))?,
                fc1: Linear::new(vb.get((f, d), &format!("{p}.fc1.weight"))?, None),
                fc2: Linear::new(vb.get((d, f), &format!("{p}.fc2.weight"))?, None),
            });
        }
        let heads = (0..cfg.num_codebooks)
            .map(|k| vb.get((cfg.vocab_size, d), &format!("decoder.lm_heads.{k}.weight")))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            device: vb.device().clone(),
            d,
            heads: cfg.num_attention_heads,
            layers,
            norm: norm(vb, d, &format!("{PREFIX}.layer_norm"))?,
            lm: Linear::new(Tensor::cat(&heads, 0)?, None),
        })
    }

    pub fn device(&self) -> Device {
        self.device.clone()
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        Ok(x.reshape((b, n, self.heads, self.d / self.heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    pub fn cache(
        &self,
        rows: usize,
        capacity: usize,
        cross: Option<&CrossStates>,
    ) -> Result<Cache> {
        let hd = self.d / self.heads;
        let zeros = || Tensor::zeros((rows, self.heads, capacity, hd), DType::F32, &self.device);
        let mut c = Cache {
            k: Vec::new(),
            v: Vec::new(),
            cross: Vec::new(),
            cross_mask: None,
        };
        for _ in &self.layers {
            c.k.push(zeros()?);
            c.v.push(zeros()?);
        }
        if let Some(cs) = cross.filter(|c| c.rows.iter().any(|r| *r) && c.len > 0) {
            let states = Tensor::from_slice(&cs.states, (1, cs.len, self.d), &self.device)?;
            for layer in &self.layers {
                if let Some((_, a)) = &layer.cross {
                    let k = self.split_heads(&a.k.forward(&states)?)?;
                    let v = self.split_heads(&a.v.forward(&states)?)?;
                    c.cross.push((k, v));
                }
            }
            let mask: Vec<f32> = cs.rows.iter().map(|r| if *r { 1.0 } else { 0.0 }).collect();
            c.cross_mask = Some(Tensor::from_vec(mask, (rows, 1, 1), &self.device)?);
        }
        Ok(c)
    }

    pub fn forward(
        &self,
        c: &mut Cache,
        x: Vec<f32>,
        rows: usize,
        n: usize,
        past: usize,
        all: bool,
    ) -> Result<Vec<f32>> {
        let d = self.d;
        let hd = d / self.heads;
        let scale = (hd as f64).powf(-0.5);
        let mut x = Tensor::from_vec(x, (rows, n, d), &self.device)?;
        let len = past + n;
        // Query t (absolute position past + t) sees keys 0..=past + t.
        let mask = if n > 1 {
            let m: Vec<f32> = (0..n)
                .flat_map(|t| {
                    (0..len).map(move |j| {
                        if j <= past + t {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            Some(Tensor::from_vec(m, (1, 1, n, len), &self.device)?)
        } else {
            None
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let h = layer.norm1.forward(&x)?;
            let q = self.split_heads(&layer.attn.q.forward(&h)?)?;
            let k = self.split_heads(&layer.attn.k.forward(&h)?)?;
            let v = self.split_heads(&layer.attn.v.forward(&h)?)?;
            c.k[li].slice_set(&k, 2, past)?;
            c.v[li].slice_set(&v, 2, past)?;
            let keys = c.k[li].narrow(2, 0, len)?;
            let values = c.v[li].narrow(2, 0, len)?;
            let ctx = attention(&q, &keys, &values, scale, mask.as_ref())?;
            x = (x + layer.attn.out.forward(&self.merge_heads(&ctx)?)?)?;
            if let (Some((cn, a)), Some(cm)) = (&layer.cross, &c.cross_mask) {
                let (ck, cv) = &c.cross[li];
                let h = cn.forward(&x)?;
                let q = self.split_heads(&a.q.forward(&h)?)?;
                let (ck, cv) = (ck.repeat((rows, 1, 1, 1))?, cv.repeat((rows, 1, 1, 1))?);
                let ctx = attention(&q, &ck, &cv, scale, None)?;
                let out = a.out.forward(&self.merge_heads(&ctx)?)?;
                x = (x + out.broadcast_mul(cm)?)?;
            }
            let h = layer.norm3.forward(&x)?;
            let h = layer.fc1.forward(&h)?.gelu_erf()?;
            x = (x + layer.fc2.forward(&h)?)?;
        }
        let x = if all { x } else { x.narrow(1, n - 1, 1)? };
        let logits = self.lm.forward(&self.norm.forward(&x)?)?;
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }

    fn merge_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, n, _) = x.dims4()?;
        Ok(x.transpose(1, 2)?.reshape((b, n, self.d))?)
    }
}

fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    let p = candle_nn::ops::softmax_last_dim(&scores)?;
    Ok(p.matmul(&v.contiguous()?)?)
}
