//! EnCodec's residual vector quantizer: each codebook quantizes what the previous ones left,
//! by nearest codeword in Euclidean distance; decoding sums the chosen codewords.

use candle_core::{Device, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::EncodecConfig;
use crate::{MusicgenError, Result};

pub struct Quantizer {
    /// Per codebook, `[codebook_size, dim]`.
    embed: Vec<Tensor>,
    size: usize,
}

impl Quantizer {
    pub fn load(vb: VarBuilder, cfg: &EncodecConfig) -> Result<Self> {
        let shape = (cfg.codebook_size, cfg.codebook_dim());
        let embed = (0..cfg.num_quantizers())
            .map(|q| vb.get(shape, &format!("layers.{q}.codebook.embed")))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embed,
            size: cfg.codebook_size,
        })
    }

    /// `[dim, frames]` → `codebooks × frames`. The distance is computed as the reference does
    /// (`‖x‖² − 2·x·e + ‖e‖²`, smallest wins), so near ties break the same way.
    pub fn encode(&self, x: &Tensor) -> Result<Vec<Vec<u32>>> {
        let mut residual = x.t()?.contiguous()?; // [frames, dim]
        let mut codes = Vec::with_capacity(self.embed.len());
        for e in &self.embed {
            let x2 = residual.sqr()?.sum_keepdim(1)?;
            let e2 = e.sqr()?.sum_keepdim(1)?.t()?;
            let xe = residual.matmul(&e.t()?)?;
            let dist = x2.broadcast_sub(&(xe * 2.0)?)?.broadcast_add(&e2)?;
            let idx = dist.argmin(D::Minus1)?;
            residual = (residual - e.index_select(&idx, 0)?)?;
            codes.push(idx.to_vec1::<u32>()?);
        }
        Ok(codes)
    }

    /// `codebooks × frames` → `[dim, frames]`. Fewer codebooks than the model has are summed
    /// as given; more, or codes outside the codebook, are an error.
    pub fn decode(&self, codes: &[Vec<u32>], device: &Device) -> Result<Tensor> {
        if codes.is_empty() || codes.len() > self.embed.len() {
            return Err(MusicgenError::params(format!(
                "{} codebooks given, the codec has {}",
                codes.len(),
                self.embed.len()
            )));
        }
        let frames = codes[0].len();
        if frames == 0 || codes.iter().any(|c| c.len() != frames) {
            return Err(MusicgenError::params(
                "codebooks of different or zero length",
            ));
        }
        let mut sum: Option<Tensor> = None;
        for (c, e) in codes.iter().zip(&self.embed) {
            if let Some(bad) = c.iter().find(|&&v| v as usize >= self.size) {
                return Err(MusicgenError::params(format!(
                    "code {bad} is outside the codebook of {}",
                    self.size
                )));
            }
            let idx = Tensor::from_slice(c, frames, device)?;
            let q = e.index_select(&idx, 0)?;
            sum = Some(match sum {
                Some(s) => (s + q)?,
                None => q,
            });
        }
        let sum = sum.ok_or_else(|| MusicgenError::params("no codes"))?;
        Ok(sum.t()?.contiguous()?)
    }
}
