//! The MusicGen decoder: a pre-norm transformer over the sum of one embedding per codebook
//! plus sinusoidal positions, with causal self-attention, cross-attention over the text
//! conditioning (absent in MusicGen-Melody, which puts its conditioning in front of the tokens
//! instead), a GELU feed-forward block, and one linear head per codebook.
//!
//! Generation runs it incrementally: a [`Session`] holds the key/value cache of every layer,
//! allocated once for the whole window so that no step copies it. Two implementations share
//! the weights' meaning: [`cpu`] (float32 slices and the kernels of [`crate::kernels`], chosen
//! on the CPU) and [`device`] (candle ops, for CUDA; also loadable on the CPU so the tests hold
//! it to the same fixtures).

pub mod cpu;
pub mod device;

use candle_core::Device;
use candle_nn::VarBuilder;

use crate::config::DecoderConfig;
use crate::{MusicgenError, Result};

pub(crate) const PREFIX: &str = "decoder.model.decoder";
const LN_EPS: f32 = 1e-5;

/// The decoder's weights, on the CPU kernels or on a candle device.
pub struct Decoder {
    cfg: DecoderConfig,
    /// `embed[k]` is codebook k's table, `(vocab + 1) × hidden` (the extra row is the pad/BOS
    /// token). Kept on the CPU for both back ends: a step only gathers a few rows.
    embed: Vec<Vec<f32>>,
    /// `freq[i]` of the sinusoidal positions (`exp(-i·ln(10000)/(half-1))`, rounded to float32
    /// as the reference computes it).
    freq: Vec<f32>,
    backend: Backend,
}

enum Backend {
    Cpu(cpu::Layers),
    Device(device::Layers),
}

/// What the rows of a session are conditioned on by cross-attention.
#[derive(Clone)]
pub struct CrossStates {
    /// The projected text states, `len × hidden`, for the rows that attend to them.
    pub states: Vec<f32>,
    pub len: usize,
    /// Which rows attend (the unconditional row of guidance sees zero states, whose
    /// attention output is exactly zero because the projections have no bias).
    pub rows: Vec<bool>,
}

/// One generation's state: rows (1, or 2 with guidance), positions so far, the caches.
pub struct Session {
    rows: usize,
    len: usize,
    capacity: usize,
    inner: SessionInner,
}

enum SessionInner {
    Cpu(cpu::Cache),
    Device(device::Cache),
}

impl Session {
    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Decoder {
    /// Loads the fast CPU path on the CPU and the candle-op path on other devices.
    pub fn load(vb: VarBuilder, cfg: &DecoderConfig, cross: bool) -> Result<Self> {
        if vb.device().is_cpu() {
            let layers = cpu::Layers::load(&vb, cfg, cross)?;
            Self::with(vb, cfg, Backend::Cpu(layers))
        } else {
            Self::load_portable(vb, cfg, cross)
        }
    }

    /// The candle-op path on any device (what CUDA runs).
    pub fn load_portable(vb: VarBuilder, cfg: &DecoderConfig, cross: bool) -> Result<Self> {
        let layers = device::Layers::load(&vb, cfg, cross)?;
        Self::with(vb, cfg, Backend::Device(layers))
    }

    fn with(vb: VarBuilder, cfg: &DecoderConfig, backend: Backend) -> Result<Self> {
        let d = cfg.hidden_size;
        let mut embed = Vec::with_capacity(cfg.num_codebooks);
        for k in 0..cfg.num_codebooks {
            let t = vb.get(
                (cfg.vocab_size + 1, d),
                &format!("{PREFIX}.embed_tokens.{k}.weight"),
            )?;
            embed.push(t.flatten_all()?.to_vec1::<f32>()?);
        }
        let half = d / 2;
        let step = (10000f64.ln() / (half as f64 - 1.0).max(1.0)) as f32;
        let freq = (0..half)
            .map(|i| (f64::from(i as f32 * -step)).exp() as f32)
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            freq,
            backend,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub fn device(&self) -> Device {
        match &self.backend {
            Backend::Cpu(_) => Device::Cpu,
            Backend::Device(l) => l.device(),
        }
    }

    /// Starts a session of `rows` rows with room for `capacity` positions.
    pub fn start(
        &self,
        rows: usize,
        capacity: usize,
        cross: Option<&CrossStates>,
    ) -> Result<Session> {
        if let Some(c) = cross {
            if c.rows.len() != rows || c.states.len() != c.len * self.cfg.hidden_size {
                return Err(MusicgenError::params("cross states do not fit the session"));
            }
        }
        let inner = match &self.backend {
            Backend::Cpu(l) => SessionInner::Cpu(l.cache(rows, capacity, cross)),
            Backend::Device(l) => SessionInner::Device(l.cache(rows, capacity, cross)?),
        };
        Ok(Session {
            rows,
            len: 0,
            capacity,
            inner,
        })
    }

    /// Sum of the codebook embeddings of `tokens` (`rows × n × codebooks`, row-major), the
    /// decoder's input before positions: `rows × n × hidden`.
    pub fn embed(&self, tokens: &[u32], rows: usize, n: usize) -> Result<Vec<f32>> {
        let k = self.cfg.num_codebooks;
        let d = self.cfg.hidden_size;
        if tokens.len() != rows * n * k {
            return Err(MusicgenError::params("token block has the wrong size"));
        }
        let mut x = vec![0f32; rows * n * d];
        for (pos, out) in x.chunks_exact_mut(d).enumerate() {
            for (cb, table) in self.embed.iter().enumerate() {
                let t = tokens[pos * k + cb] as usize;
                if t > self.cfg.vocab_size {
                    return Err(MusicgenError::params(format!(
                        "code {t} is outside the codebook (0..={})",
                        self.cfg.vocab_size
                    )));
                }
                for (o, e) in out.iter_mut().zip(&table[t * d..(t + 1) * d]) {
                    *o += e;
                }
            }
        }
        Ok(x)
    }

    /// Adds the sinusoidal embedding of positions `start..start+n` to each row of `x`
    /// (`rows × n × hidden`): `[cos(p·f), sin(p·f)]` as the reference builds it.
    fn add_positions(&self, x: &mut [f32], n: usize, start: usize) {
        let d = self.cfg.hidden_size;
        let half = self.freq.len();
        for (i, row) in x.chunks_exact_mut(d).enumerate() {
            let p = (start + i % n) as f32;
            for (j, f) in self.freq.iter().enumerate() {
                let a = f64::from(p * f);
                row[j] += a.cos() as f32;
                row[half + j] += a.sin() as f32;
            }
        }
    }

    /// Runs `n` new positions of every row (`x`: `rows × n × hidden` input embeddings, without
    /// positions) through the decoder, causally after what the session holds, and returns the
    /// logits `rows × m × (codebooks · vocab)`, `m = n` when `all` else the last position only.
    pub fn forward(&self, s: &mut Session, x: &[f32], n: usize, all: bool) -> Result<Vec<f32>> {
        let d = self.cfg.hidden_size;
        if n == 0 || x.len() != s.rows * n * d {
            return Err(MusicgenError::params("decoder input has the wrong size"));
        }
        if s.len + n > s.capacity {
            return Err(MusicgenError::params(format!(
                "the session holds {} positions; {} more do not fit",
                s.capacity - s.len,
                n
            )));
        }
        let mut x = x.to_vec();
        self.add_positions(&mut x, n, s.len);
        let logits = match (&self.backend, &mut s.inner) {
            (Backend::Cpu(l), SessionInner::Cpu(c)) => l.forward(c, x, s.rows, n, s.len, all),
            (Backend::Device(l), SessionInner::Device(c)) => l.forward(c, x, s.rows, n, s.len, all),
            _ => Err(MusicgenError::params("session from another decoder")),
        }?;
        s.len += n;
        Ok(logits)
    }
}
