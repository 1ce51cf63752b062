//! Pieces the Gemma 3 and Gemma 3n text decoders share: RMS norm, rotary tables, the key/value
//! cache, grouped-query attention with causal, sliding-window masks and optional soft-capping,
//! and linear layers that are either float or GGUF-quantised.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use crate::error::Result;

/// A weight matrix `[out, in]` applied as `x · wᵀ`.
#[derive(Debug, Clone)]
pub struct Linear(QMatMul);

impl Linear {
    /// A float weight.
    pub fn float(w: Tensor) -> Self {
        Linear(QMatMul::Tensor(w))
    }

    /// A GGUF tensor: kept quantised (the kernels quantise activations to 8 bits per block,
    /// as llama.cpp does), or dequantised to float32 once at load.
    pub fn gguf(q: QTensor, dequantize: bool, device: &Device) -> Result<Self> {
        Ok(if dequantize {
            Linear(QMatMul::Tensor(q.dequantize(device)?))
        } else {
            Linear(QMatMul::from_qtensor(q)?)
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.0.forward(x)?)
    }
}

/// `x / sqrt(mean(x²) + eps) · w` over the last axis, in float32; no `w` for the scale-free
/// norms of Gemma 3n.
pub fn rms_norm(x: &Tensor, w: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let y = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(match w {
        Some(w) => y.broadcast_mul(w)?,
        None => y,
    })
}

/// Rotary tables `[positions, head_dim / 2]` for one base frequency (non-interleaved halves,
/// as the reference's `rotate_half`).
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(head_dim: usize, base: f64) -> Self {
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| (1.0 / base.powf(i as f64 / head_dim as f64)) as f32)
            .collect();
        Self { inv_freq }
    }

    /// cos and sin for positions `start..start + len`.
    pub fn tables(&self, start: usize, len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &f in &self.inv_freq {
                // The reference multiplies in float32.
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (len, half), device)?,
            Tensor::from_vec(sin, (len, half), device)?,
        ))
    }
}

/// Applies rotary tables to `x` `[b, heads, t, head_dim]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?)
}

/// Additive mask `[t, start + t]` for queries at `start..start + t`: a key is visible when it
/// is not in the future and, with a window, fewer than `window` positions back.
pub fn causal_mask(
    start: usize,
    t: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let total = start + t;
    let mut m = vec![0f32; t * total];
    for i in 0..t {
        let q = start + i;
        for k in 0..total {
            let future = k > q;
            let too_old = window.is_some_and(|w| q - k.min(q) >= w);
            if future || too_old {
                m[i * total + k] = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(m, (t, total), device)?)
}

/// Scaled dot-product attention of `q` `[b, h, t, d]` over `k`, `v` `[b, kv_h, T, d]`
/// (each key/value head serves `h / kv_h` query heads), logits soft-capped to
/// `cap · tanh(x / cap)` when asked. Returns `[b, t, h·d]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let kv_h = k.dim(1)?;
    let rep = h / kv_h;
    // Grouping the query heads of one key head as rows keeps a single matmul per key head.
    let q = q.reshape((b, kv_h, rep * t, d))?;
    let mut s = (q.matmul(&k.t()?)? * scale)?;
    if let Some(cap) = softcap {
        s = ((s / cap)?.tanh()? * cap)?;
    }
    let total = k.dim(2)?;
    let s = s
        .reshape((b, kv_h, rep, t, total))?
        .broadcast_add(mask)?
        .reshape((b, kv_h, rep * t, total))?;
    let p = candle_nn::ops::softmax_last_dim(&s)?;
    let o = p.matmul(&v.contiguous()?)?.reshape((b, h, t, d))?;
    Ok(o.transpose(1, 2)?.reshape((b, t, h * d))?)
}

/// Keys and values seen so far, per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions already in the cache.
    pub len: usize,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        Self {
            layers: vec![None; layers],
            len: 0,
        }
    }

    /// Everything cached for `layer`, if it has written anything.
    pub fn get(&self, layer: usize) -> Option<(Tensor, Tensor)> {
        self.layers.get(layer)?.clone()
    }

    /// Appends `k`, `v` `[b, kv_h, t, d]` for `layer`; returns everything cached for it.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let slot = &mut self.layers[layer];
        let kv = match slot.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *slot = Some(kv.clone());
        Ok(kv)
    }
}

/// Float32 view of a tensor (no copy when it already is).
pub fn f32(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_mask_keeps_window_keys() {
        let m = causal_mask(3, 2, Some(2), &Device::Cpu).unwrap();
        let m: Vec<Vec<f32>> = m.to_vec2().unwrap();
        // Query 3 sees 2, 3; query 4 sees 3, 4.
        let seen = |row: &Vec<f32>| row.iter().map(|v| v.is_finite()).collect::<Vec<_>>();
        assert_eq!(seen(&m[0]), [false, false, true, true, false]);
        assert_eq!(seen(&m[1]), [false, false, false, true, true]);
        let full = causal_mask(0, 3, None, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(seen(&full[2]), [true, true, true]);
        assert_eq!(seen(&full[0]), [true, false, false]);
    }

    #[test]
    fn grouped_attention_matches_per_head_attention() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 4, 3, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 2, 3, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 2, 3, 8), &dev).unwrap();
        let mask = causal_mask(0, 3, None, &dev).unwrap();
        let got = attention(&q, &k, &v, &mask, 0.5, Some(2.0)).unwrap();
        // Head h uses key head h / 2, one head at a time.
        for h in 0..4 {
            let qh = q.narrow(1, h, 1).unwrap();
            let kh = k.narrow(1, h / 2, 1).unwrap();
            let vh = v.narrow(1, h / 2, 1).unwrap();
            let s = (qh.matmul(&kh.t().unwrap()).unwrap() * 0.5).unwrap();
            let s = ((s / 2.0).unwrap().tanh().unwrap() * 2.0).unwrap();
            let s = s.broadcast_add(&mask).unwrap();
            let p = candle_nn::ops::softmax_last_dim(&s).unwrap();
            let want = p
                .matmul(&vh)
                .unwrap()
                .squeeze(1)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let got_h = got.squeeze(0).unwrap().narrow(1, h * 8, 8).unwrap();
            let d: f32 = (got_h - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-6, "head {h}: {d}");
        }
    }

    #[test]
    fn rms_norm_normalises_rows() {
        let x = Tensor::new(&[[3f32, 4.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = rms_norm(&x, Some(&w), 0.0).unwrap().to_vec2().unwrap();
        let r = (12.5f32).sqrt();
        assert!((y[0][0] - 3.0 / r).abs() < 1e-6 && (y[0][1] - 8.0 / r).abs() < 1e-6);
    }
}
