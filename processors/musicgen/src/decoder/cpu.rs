//! The decoder on float32 slices with the kernels of [`crate::kernels`]. Weights are copied out
//! of candle at load (the three self-attention projections into one matrix, the codebook heads
//! into another, so a step streams each once); the caches are plain vectors laid out
//! `[row][head][position][head_dim]`, allocated once per session.

use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::{CrossStates, LN_EPS, PREFIX};
use crate::config::DecoderConfig;
use crate::kernels::{axpy, dot, gelu_in_place, layer_norm, linear, simd, softmax};
use crate::Result;

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Cross {
    norm: Norm,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    out: Vec<f32>,
}

struct Layer {
    norm1: Norm,
    /// `[q; k; v]`, `3·hidden × hidden`.
    qkv: Vec<f32>,
    out: Vec<f32>,
    cross: Option<Cross>,
    norm3: Norm,
    fc1: Vec<f32>,
    fc2: Vec<f32>,
}

pub struct Layers {
    d: usize,
    heads: usize,
    ffn: usize,
    layers: Vec<Layer>,
    norm: Norm,
    /// Every codebook's head stacked, `(codebooks · vocab) × hidden`.
    heads_w: Vec<f32>,
    out_width: usize,
}

fn get(vb: &VarBuilder, shape: (usize, usize), name: &str) -> Result<Vec<f32>> {
    Ok(vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()?)
}

fn norm(vb: &VarBuilder, d: usize, name: &str) -> Result<Norm> {
    Ok(Norm {
        w: vb.get(d, &format!("{name}.weight"))?.to_vec1()?,
        b: vb.get(d, &format!("{name}.bias"))?.to_vec1()?,
    })
}

/// Per-layer caches of one session.
pub struct Cache {
    capacity: usize,
    /// Self-attention keys and values per layer, `[row][head][capacity][head_dim]`.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Cross-attention keys and values per layer, `[head][len][head_dim]`, and the rows that
    /// attend; empty without conditioning.
    cross_k: Vec<Vec<f32>>,
    cross_v: Vec<Vec<f32>>,
    cross_len: usize,
    cross_rows: Vec<bool>,
}

impl Layers {
    pub fn load(vb: &VarBuilder, cfg: &DecoderConfig, cross: bool) -> Result<Self> {
        let d = cfg.hidden_size;
        let f = cfg.ffn_dim;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{PREFIX}.layers.{i}");
            let mut qkv = get(vb, (d, d), &format!("{p}.self_attn.q_proj.weight"))?;
            qkv.extend(get(vb, (d, d), &format!("{p}.self_attn.k_proj.weight"))?);
            qkv.extend(get(vb, (d, d), &format!("{p}.self_attn.v_proj.weight"))?);
            let cross = if cross {
                let a = format!("{p}.encoder_attn");
                Some(Cross {
                    norm: norm(vb, d, &format!("{p}.encoder_attn_layer_norm"))?,
                    q: get(vb, (d, d), &format!("{a}.q_proj.weight"))?,
                    k: get(vb, (d, d), &format!("{a}.k_proj.weight"))?,
                    v: get(vb, (d, d), &format!("{a}.v_proj.weight"))?,
                    out: get(vb, (d, d), &format!("{a}.out_proj.weight"))?,
                })
            } else {
                None
            };
            layers.push(Layer {
                norm1: norm(vb, d, &format!("{p}.self_attn_layer_norm"))?,
                qkv,
                out: get(vb, (d, d), &format!("{p}.self_attn.out_proj.weight"))?,
                cross,
                norm3: norm(vb, d, &format!("{p}.final_layer_norm"))?,
                fc1: get(vb, (f, d), &format!("{p}.fc1.weight"))?,
                fc2: get(vb, (d, f), &format!("{p}.fc2.weight"))?,
            });
        }
        let mut heads_w = Vec::with_capacity(cfg.num_codebooks * cfg.vocab_size * d);
        for k in 0..cfg.num_codebooks {
            heads_w.extend(get(
                vb,
                (cfg.vocab_size, d),
                &format!("decoder.lm_heads.{k}.weight"),
            )?);
        }
        Ok(Self {
            d,
            heads: cfg.num_attention_heads,
            ffn: f,
            layers,
            norm: norm(vb, d, &format!("{PREFIX}.layer_norm"))?,
            heads_w,
            out_width: cfg.num_codebooks * cfg.vocab_size,
        })
    }

    pub fn cache(&self, rows: usize, capacity: usize, cross: Option<&CrossStates>) -> Cache {
        let size = rows * capacity * self.d;
        let n = self.layers.len();
        let (mut cross_k, mut cross_v, mut cross_len, mut cross_rows) =
            (Vec::new(), Vec::new(), 0, vec![false; rows]);
        if let Some(c) = cross.filter(|c| c.rows.iter().any(|r| *r) && c.len > 0) {
            cross_len = c.len;
            cross_rows = c.rows.clone();
            for layer in &self.layers {
                let Some(a) = &layer.cross else { continue };
                let mut k = vec![0f32; c.len * self.d];
                let mut v = vec![0f32; c.len * self.d];
                linear(&c.states, c.len, &a.k, self.d, &mut k, false);
                linear(&c.states, c.len, &a.v, self.d, &mut v, false);
                cross_k.push(self.by_head(&k, c.len));
                cross_v.push(self.by_head(&v, c.len));
            }
        }
        Cache {
            capacity,
            k: (0..n).map(|_| vec![0f32; size]).collect(),
            v: (0..n).map(|_| vec![0f32; size]).collect(),
            cross_k,
            cross_v,
            cross_len,
            cross_rows,
        }
    }

    /// `len × hidden` → `[head][len][head_dim]`.
    fn by_head(&self, x: &[f32], len: usize) -> Vec<f32> {
        let hd = self.d / self.heads;
        let mut out = vec![0f32; x.len()];
        for t in 0..len {
            for h in 0..self.heads {
                out[(h * len + t) * hd..(h * len + t + 1) * hd]
                    .copy_from_slice(&x[t * self.d + h * hd..t * self.d + (h + 1) * hd]);
            }
        }
        out
    }

    pub fn forward(
        &self,
        c: &mut Cache,
        mut x: Vec<f32>,
        rows: usize,
        n: usize,
        past: usize,
        all: bool,
    ) -> Result<Vec<f32>> {
        let d = self.d;
        let m = rows * n;
        let mut h = vec![0f32; m * d];
        let mut qkv = vec![0f32; m * 3 * d];
        let mut ctx = vec![0f32; m * d];
        let mut ff = vec![0f32; m * self.ffn];
        for (li, layer) in self.layers.iter().enumerate() {
            layer_norm(&x, d, &layer.norm1.w, &layer.norm1.b, LN_EPS, &mut h);
            linear(&h, m, &layer.qkv, 3 * d, &mut qkv, false);
            self.store_kv(c, li, &qkv, rows, n, past);
            self.self_attention(c, li, &qkv, rows, n, past, &mut ctx);
            linear(&ctx, m, &layer.out, d, &mut x, true);
            if let Some(a) = &layer.cross {
                if c.cross_len > 0 {
                    layer_norm(&x, d, &a.norm.w, &a.norm.b, LN_EPS, &mut h);
                    // The query projection reuses the qkv buffer's first m × d floats.
                    let q = &mut qkv[..m * d];
                    linear(&h, m, &a.q, d, q, false);
                    self.cross_attention(c, li, q, rows, n, &mut ctx);
                    linear(&ctx, m, &a.out, d, &mut x, true);
                }
            }
            layer_norm(&x, d, &layer.norm3.w, &layer.norm3.b, LN_EPS, &mut h);
            linear(&h, m, &layer.fc1, self.ffn, &mut ff, false);
            gelu_in_place(&mut ff);
            linear(&ff, m, &layer.fc2, d, &mut x, true);
        }
        // Only the positions whose logits are wanted go through the final norm and heads.
        let keep: Vec<f32> = if all {
            x
        } else {
            x.chunks_exact(n * d)
                .flat_map(|r| r[(n - 1) * d..].iter().copied())
                .collect()
        };
        let mk = keep.len() / d;
        let mut normed = vec![0f32; keep.len()];
        layer_norm(&keep, d, &self.norm.w, &self.norm.b, LN_EPS, &mut normed);
        let mut logits = vec![0f32; mk * self.out_width];
        linear(
            &normed,
            mk,
            &self.heads_w,
            self.out_width,
            &mut logits,
            false,
        );
        Ok(logits)
    }

    /// Writes the new positions' keys and values into the cache.
    fn store_kv(&self, c: &mut Cache, li: usize, qkv: &[f32], rows: usize, n: usize, past: usize) {
        let d = self.d;
        let hd = d / self.heads;
        let cap = c.capacity;
        for r in 0..rows {
            for t in 0..n {
                let src = &qkv[(r * n + t) * 3 * d..(r * n + t + 1) * 3 * d];
                for h in 0..self.heads {
                    let at = ((r * self.heads + h) * cap + past + t) * hd;
                    c.k[li][at..at + hd].copy_from_slice(&src[d + h * hd..d + (h + 1) * hd]);
                    c.v[li][at..at + hd]
                        .copy_from_slice(&src[2 * d + h * hd..2 * d + (h + 1) * hd]);
                }
            }
        }
    }

    /// Causal attention of the new positions over the cache, one rayon task per row and head.
    #[allow(clippy::too_many_arguments)]
    fn self_attention(
        &self,
        c: &Cache,
        li: usize,
        qkv: &[f32],
        rows: usize,
        n: usize,
        past: usize,
        ctx: &mut [f32],
    ) {
        let d = self.d;
        let hd = d / self.heads;
        let cap = c.capacity;
        let (ks, vs) = (&c.k[li], &c.v[li]);
        let outs: Vec<Vec<f32>> = (0..rows * self.heads)
            .into_par_iter()
            .map(|rh| {
                let (r, h) = (rh / self.heads, rh % self.heads);
                let base = rh * cap * hd;
                let len = past + n;
                let mut out = vec![0f32; n * hd];
                let mut scores = vec![0f32; len];
                let q = &qkv[r * n * 3 * d + h * hd..];
                let kv = (&ks[base..base + len * hd], &vs[base..base + len * hd]);
                attend(q, 3 * d, kv, hd, n, true, &mut scores, &mut out);
                out
            })
            .collect();
        scatter_heads(&outs, rows, n, self.heads, hd, ctx);
    }

    #[allow(clippy::too_many_arguments)]
    fn cross_attention(
        &self,
        c: &Cache,
        li: usize,
        q: &[f32],
        rows: usize,
        n: usize,
        ctx: &mut [f32],
    ) {
        let d = self.d;
        let hd = d / self.heads;
        let s = c.cross_len;
        let (ks, vs) = (&c.cross_k[li], &c.cross_v[li]);
        let outs: Vec<Vec<f32>> = (0..rows * self.heads)
            .into_par_iter()
            .map(|rh| {
                let (r, h) = (rh / self.heads, rh % self.heads);
                let mut out = vec![0f32; n * hd];
                if c.cross_rows[r] {
                    let base = h * s * hd;
                    let mut scores = vec![0f32; s];
                    let kv = (&ks[base..base + s * hd], &vs[base..base + s * hd]);
                    attend(
                        &q[r * n * d + h * hd..],
                        d,
                        kv,
                        hd,
                        n,
                        false,
                        &mut scores,
                        &mut out,
                    );
                }
                out
            })
            .collect();
        scatter_heads(&outs, rows, n, self.heads, hd, ctx);
    }
}

simd! {
    /// Scaled dot-product attention of `n` queries (query t at `q[t·stride..][..hd]`) over
    /// the `len = keys.len() / hd` keys and values; causal: query t sees the first
    /// `len - n + t + 1` keys (the cache before it and itself).
    #[allow(clippy::too_many_arguments)]
    fn attend(
        q: &[f32],
        stride: usize,
        kv: (&[f32], &[f32]),
        hd: usize,
        n: usize,
        causal: bool,
        scores: &mut [f32],
        out: &mut [f32]
    ) {
        let (keys, values) = kv;
        let len = keys.len() / hd;
        let scale = (hd as f32).powf(-0.5);
        let mut qs = vec![0f32; hd];
        for t in 0..n {
            for (a, b) in qs.iter_mut().zip(&q[t * stride..t * stride + hd]) {
                *a = b * scale;
            }
            let seen = if causal { len - n + t + 1 } else { len };
            let sc = &mut scores[..seen];
            for (j, s) in sc.iter_mut().enumerate() {
                *s = dot(&qs, &keys[j * hd..(j + 1) * hd]);
            }
            softmax(sc);
            let o = &mut out[t * hd..(t + 1) * hd];
            o.fill(0.0);
            for (j, p) in sc.iter().enumerate() {
                axpy(*p, &values[j * hd..(j + 1) * hd], o);
            }
        }
    }
}

/// Per-(row, head) outputs `[n][hd]` → `ctx` `[row][n][hidden]`.
fn scatter_heads(
    outs: &[Vec<f32>],
    rows: usize,
    n: usize,
    heads: usize,
    hd: usize,
    ctx: &mut [f32],
) {
    let d = heads * hd;
    for r in 0..rows {
        for h in 0..heads {
            let o = &outs[r * heads + h];
            for t in 0..n {
                ctx[(r * n + t) * d + h * hd..][..hd].copy_from_slice(&o[t * hd..(t + 1) * hd]);
            }
        }
    }
}
