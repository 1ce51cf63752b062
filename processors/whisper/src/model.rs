//! The Whisper network: a convolutional front end and Transformer encoder over log-mel
//! frames, and a Transformer decoder with a self-attention cache (one row per beam) that
//! can also hand back its cross-attention weights for word alignment.
//!
//! Weights are taken by Hugging Face names (`model.encoder.layers.0.fc1.weight`...), so
//! the safetensors layout loads as is and the CTranslate2 loader maps onto the same names.

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Storage, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear};

use crate::error::{Result, WhisperError};
use crate::int8::Q8;
use crate::{kernels, Precision};

/// Sizes of a Whisper model, read from its weights or config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dims {
    pub n_mels: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_vocab: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
}

/// Named f32 tensors plus a helper that reports which one is missing.
pub(crate) struct Weights {
    pub(crate) map: HashMap<String, Tensor>,
    pub(crate) device: Device,
    /// What the linear layers are built with.
    pub(crate) precision: Precision,
}

/// A linear layer: float32, or 8-bit weights (blocks of 32 values sharing one scale): on the
/// CPU the crate's own product ([`crate::int8`], float32 activations, rayon's pool), elsewhere
/// candle's Q8_0 kernels, which quantise the activations the same way.
enum Lin {
    F32(Linear),
    Int8(QMatMul, Option<Tensor>),
    Q8(Q8, Option<Tensor>),
}

impl Lin {
    fn new(weight: Tensor, bias: Option<Tensor>, precision: Precision) -> Result<Self> {
        Ok(match precision {
            Precision::F32 => Self::F32(Linear::new(weight, bias)),
            Precision::Int8 if weight.device().is_cpu() => {
                let (rows, cols) = weight.dims2()?;
                check_int8_width(cols)?;
                let values = weight.flatten_all()?.to_vec1::<f32>()?;
                Self::Q8(Q8::quantize(&values, rows, cols), bias)
            }
            Precision::Int8 => Self::Int8(quantize(&weight)?, bias),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, b) = match self {
            Self::F32(l) => return Ok(l.forward(x)?),
            Self::Int8(w, b) => (w.forward(&x.contiguous()?)?, b),
            Self::Q8(w, b) => (q8_forward(w, x)?, b),
        };
        Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// `gelu(forward(x))`, with the bias added in the same in-place pass as GELU
    /// ([`crate::kernels`]) instead of into a fresh tensor first.
    fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        let (y, bias) = match self {
            // The product exactly as candle's `Linear::forward` forms it, without the bias.
            Self::F32(l) => {
                let w = l.weight().t()?;
                let y = match *x.dims() {
                    [b, m, k] if x.is_contiguous() => {
                        x.reshape((b * m, k))?.matmul(&w)?.reshape((b, m, ()))?
                    }
                    [b, _, _] => x.matmul(&l.weight().broadcast_left(b)?.t()?)?,
                    _ => x.matmul(&w)?,
                };
                (y, l.bias())
            }
            Self::Int8(w, b) => (w.forward(&x.contiguous()?)?, b.as_ref()),
            Self::Q8(w, b) => (q8_forward(w, x)?, b.as_ref()),
        };
        match bias {
            Some(b) => kernels::bias_gelu_tensor(y, b),
            None => kernels::gelu_tensor(y),
        }
    }
}

/// `[.., in]` → `[.., out]` through the crate's 8-bit product.
fn q8_forward(w: &Q8, x: &Tensor) -> Result<Tensor> {
    let mut shape = x.dims().to_vec();
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    let y = w.matmul(&values);
    if let Some(last) = shape.last_mut() {
        *last = w.rows();
    }
    Ok(Tensor::from_vec(y, shape, x.device())?)
}

/// int8 needs input widths that are multiples of the block (every Whisper width is).
fn check_int8_width(k: usize) -> Result<()> {
    if k.is_multiple_of(crate::int8::BLOCK) {
        return Ok(());
    }
    Err(WhisperError::InvalidModel {
        path: "weights".into(),
        reason: format!("int8 needs widths that are multiples of 32, not {k}"),
    })
}

/// `[out, in]` float weights → Q8_0 on the weights' (non-CPU) device. candle quantises on
/// the CPU only.
fn quantize(w: &Tensor) -> Result<QMatMul> {
    let (_, k) = w.dims2()?;
    check_int8_width(k)?;
    debug_assert_eq!(GgmlDType::Q8_0.block_size(), crate::int8::BLOCK);
    // A copy of exactly this tensor's values: candle quantises a tensor's whole storage, and
    // the q/k/v weights are views into the fused CTranslate2 matrix.
    let values = w.flatten_all()?.to_vec1::<f32>()?;
    let cpu = Tensor::from_vec(values, w.shape(), &Device::Cpu)?;
    let q = QTensor::quantize_onto(&cpu, GgmlDType::Q8_0, w.device())?;
    Ok(QMatMul::from_qtensor(q)?)
}

impl Weights {
    fn get(&self, name: &str) -> Result<Tensor> {
        let t = self
            .map
            .get(name)
            .ok_or_else(|| WhisperError::InvalidModel {
                path: "weights".into(),
                reason: format!("missing tensor {name}"),
            })?;
        Ok(t.to_dtype(DType::F32)?.to_device(&self.device)?)
    }
    fn linear(&self, p: &str, bias: bool) -> Result<Lin> {
        let b = if bias {
            Some(self.get(&format!("{p}.bias"))?)
        } else {
            None
        };
        Lin::new(self.get(&format!("{p}.weight"))?, b, self.precision)
    }
    fn norm(&self, p: &str) -> Result<LayerNorm> {
        Ok(LayerNorm::new(
            self.get(&format!("{p}.weight"))?,
            self.get(&format!("{p}.bias"))?,
            1e-5,
        ))
    }
}

struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    out: Lin,
    heads: usize,
}

impl Attention {
    fn load(w: &Weights, p: &str, heads: usize) -> Result<Self> {
        Ok(Self {
            q: w.linear(&format!("{p}.q_proj"), true)?,
            k: w.linear(&format!("{p}.k_proj"), false)?,
            v: w.linear(&format!("{p}.v_proj"), true)?,
            out: w.linear(&format!("{p}.out_proj"), true)?,
            heads,
        })
    }

    /// `[b, t, d]` → `[b, heads, t, d/heads]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        Ok(x.reshape((b, t, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(x)?)?,
            self.split(&self.v.forward(x)?)?,
        ))
    }

    /// Attends `x` to `k`/`v`; returns the output and the attention weights.
    fn attend(
        &self,
        x: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t, d) = x.dims3()?;
        // The 1/√(d/heads) scale is applied inside the softmax, not to the queries: a pass
        // less, and the same values (Whisper's head width is 64, so the scale is 1/8, a
        // power of two, and scaling before or after the product rounds alike).
        let scale = 1.0 / ((d / self.heads) as f64).sqrt();
        let q = self.split(&self.q.forward(x)?)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let w = kernels::softmax_tensor(scores, scale)?;
        let o = w.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?;
        Ok((self.out.forward(&o)?, w))
    }

    /// Attends every row of `x` (`[b, n, d]`) to one set of keys/values
    /// (`[1, heads, frames, d/heads]`, the audio all hypotheses share): the rows go through
    /// one `[1, heads, b·n, ·]` product instead of the keys being copied per hypothesis and
    /// multiplied one row at a time. The weights come back as `[1, heads, b·n, frames]`.
    fn attend_shared(&self, x: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, n, d) = x.dims3()?;
        let scale = 1.0 / ((d / self.heads) as f64).sqrt();
        let q = self.q.forward(x)?.reshape((1, b * n, d))?;
        let q = self.split(&q)?;
        let w = kernels::softmax_tensor(q.matmul(&k.t()?)?, scale)?;
        let o = w.matmul(v)?.transpose(1, 2)?.reshape((b, n, d))?;
        Ok((self.out.forward(&o)?, w))
    }
}

struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Option<(Attention, LayerNorm)>,
    fc1: Lin,
    fc2: Lin,
    mlp_ln: LayerNorm,
}

impl Block {
    fn load(w: &Weights, p: &str, heads: usize, cross: bool) -> Result<Self> {
        let cross = if cross {
            Some((
                Attention::load(w, &format!("{p}.encoder_attn"), heads)?,
                w.norm(&format!("{p}.encoder_attn_layer_norm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            attn: Attention::load(w, &format!("{p}.self_attn"), heads)?,
            attn_ln: w.norm(&format!("{p}.self_attn_layer_norm"))?,
            cross,
            fc1: w.linear(&format!("{p}.fc1"), true)?,
            fc2: w.linear(&format!("{p}.fc2"), true)?,
            mlp_ln: w.norm(&format!("{p}.final_layer_norm"))?,
        })
    }

    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward_gelu(&self.mlp_ln.forward(x)?)?;
        Ok((x + self.fc2.forward(&h)?)?)
    }
}

/// The audio encoder.
pub(crate) struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    pos: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
}

impl Encoder {
    pub(crate) fn load(w: &Weights, dims: &Dims) -> Result<Self> {
        let c1 = Conv1dConfig {
            padding: 1,
            ..Default::default()
        };
        let c2 = Conv1dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let conv = |p: &str, cfg| -> Result<Conv1d> {
            Ok(Conv1d::new(
                w.get(&format!("{p}.weight"))?,
                Some(w.get(&format!("{p}.bias"))?),
                cfg,
            ))
        };
        Ok(Self {
            conv1: conv("model.encoder.conv1", c1)?,
            conv2: conv("model.encoder.conv2", c2)?,
            pos: w.get("model.encoder.embed_positions.weight")?,
            blocks: (0..dims.n_audio_layer)
                .map(|i| {
                    Block::load(
                        w,
                        &format!("model.encoder.layers.{i}"),
                        dims.n_audio_head,
                        false,
                    )
                })
                .collect::<Result<_>>()?,
            ln: w.norm("model.encoder.layer_norm")?,
        })
    }

    /// `[b, n_mels, 3000]` → `[b, 1500, d]`.
    pub(crate) fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = kernels::gelu_tensor(self.conv1.forward(mel)?)?;
        let x = kernels::gelu_tensor(self.conv2.forward(&x)?)?.transpose(1, 2)?;
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.pos.narrow(0, 0, t)?)?;
        for b in &self.blocks {
            let h = b.attn_ln.forward(&x)?;
            let (k, v) = b.attn.kv(&h)?;
            x = (&x + b.attn.attend(&h, &k, &v, None)?.0)?;
            x = b.mlp(&x)?;
        }
        Ok(self.ln.forward(&x)?)
    }
}

/// The text decoder (its output projection is tied to the token embedding).
pub(crate) struct Decoder {
    embed: Tensor,
    /// The output projection (the embedding's transpose), quantised at int8.
    embed_q: Option<Lin>,
    pos: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
}

/// Decoding state for one audio window: cached keys/values, one batch row per hypothesis
/// for the text, one for the audio they all attend to.
pub(crate) struct DecoderState {
    cross: Vec<(Tensor, Tensor)>,
    selfkv: Vec<Option<(Tensor, Tensor)>>,
    offset: usize,
}

impl DecoderState {
    /// Keeps (and duplicates) the hypotheses at `rows`, in that order.
    pub(crate) fn reorder(&mut self, rows: &[u32]) -> Result<()> {
        let idx = Tensor::new(rows, self.cross[0].0.device())?;
        for kv in self.selfkv.iter_mut().flatten() {
            *kv = (kv.0.index_select(&idx, 0)?, kv.1.index_select(&idx, 0)?);
        }
        Ok(())
    }
}

impl Decoder {
    pub(crate) fn load(w: &Weights, dims: &Dims) -> Result<Self> {
        let embed = w.get("model.decoder.embed_tokens.weight")?;
        let embed_q = match w.precision {
            Precision::F32 => None,
            Precision::Int8 => Some(Lin::new(embed.clone(), None, Precision::Int8)?),
        };
        Ok(Self {
            embed,
            embed_q,
            pos: w.get("model.decoder.embed_positions.weight")?,
            blocks: (0..dims.n_text_layer)
                .map(|i| {
                    Block::load(
                        w,
                        &format!("model.decoder.layers.{i}"),
                        dims.n_text_head,
                        true,
                    )
                })
                .collect::<Result<_>>()?,
            ln: w.norm("model.decoder.layer_norm")?,
        })
    }

    pub(crate) fn device(&self) -> Device {
        self.embed.device().clone()
    }

    /// A fresh state for `audio` (`[1, 1500, d]`), with one hypothesis
    /// ([`DecoderState::reorder`] makes more).
    pub(crate) fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        let cross = self
            .blocks
            .iter()
            .map(|b| {
                b.cross
                    .as_ref()
                    .expect("decoder blocks have cross-attention")
                    .0
                    .kv(audio)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState {
            cross,
            selfkv: vec![None; self.blocks.len()],
            offset: 0,
        })
    }

    /// Runs `tokens` (`[b, n]`) after what the state has seen. Returns the logits of
    /// every position (`[b, n, vocab]`) and, if `heads` is not empty, the cross-attention
    /// weights of those `(layer, head)` pairs (`[heads, n, frames]`, batch row 0).
    pub(crate) fn forward(
        &self,
        tokens: &Tensor,
        state: &mut DecoderState,
        heads: &[(usize, usize)],
    ) -> Result<(Tensor, Option<Tensor>)> {
        let n = tokens.dim(1)?;
        if state.offset + n > self.pos.dim(0)? {
            return Err(WhisperError::InvalidInput(format!(
                "token sequence longer than the model's context ({})",
                self.pos.dim(0)?
            )));
        }
        let emb = self
            .embed
            .embedding(&tokens.flatten_all()?)?
            .reshape((tokens.dim(0)?, n, ()))?;
        let mut x = emb.broadcast_add(&self.pos.narrow(0, state.offset, n)?)?;
        let mask = if n > 1 {
            Some(causal_mask(n, state.offset, x.device())?)
        } else {
            None
        };
        let mut picked = Vec::new();
        for (li, b) in self.blocks.iter().enumerate() {
            let h = b.attn_ln.forward(&x)?;
            let (mut k, mut v) = b.attn.kv(&h)?;
            if let Some((pk, pv)) = &state.selfkv[li] {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            x = (&x + b.attn.attend(&h, &k, &v, mask.as_ref())?.0)?;
            state.selfkv[li] = Some((k, v));
            let (cross, cross_ln) = b
                .cross
                .as_ref()
                .expect("decoder blocks have cross-attention");
            let h = cross_ln.forward(&x)?;
            let (ck, cv) = &state.cross[li];
            let (o, w) = cross.attend_shared(&h, ck, cv)?;
            for &(_, head) in heads.iter().filter(|(l, _)| *l == li) {
                // Rows 0..n of the stacked rows are batch row 0's.
                picked.push(w.i((0, head))?.narrow(0, 0, n)?);
            }
            x = (&x + o)?;
            x = b.mlp(&x)?;
        }
        state.offset += n;
        let x = self.ln.forward(&x)?;
        let logits = match &self.embed_q {
            Some(q) => q.forward(&x)?,
            None => self.project(&x)?,
        };
        let weights = if picked.is_empty() {
            None
        } else {
            Some(Tensor::stack(&picked, 0)?)
        };
        Ok((logits, weights))
    }
}

impl Decoder {
    /// `[b, n, d]` → logits `[b, n, vocab]` through the tied embedding: the crate's own
    /// one-pass kernel on the CPU ([`crate::project`]), candle's product elsewhere.
    fn project(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        {
            let (storage, layout) = self.embed.storage_and_layout();
            if let (Storage::Cpu(cpu), Some((start, end))) =
                (&*storage, layout.contiguous_offsets())
            {
                let embed = &cpu.as_slice::<f32>()?[start..end];
                let rows = x.flatten_all()?.to_vec1::<f32>()?;
                let y = crate::project::logits(&rows, embed, d);
                let vocab = y.len() / (b * n).max(1);
                return Ok(Tensor::from_vec(y, (b, n, vocab), x.device())?);
            }
        }
        Ok(x.broadcast_matmul(&self.embed.t()?)?)
    }
}

fn causal_mask(n: usize, offset: usize, dev: &Device) -> Result<Tensor> {
    let total = offset + n;
    let m: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(m, (n, total), dev)?)
}

/// Encoder and decoder together.
pub(crate) struct Model {
    pub(crate) dims: Dims,
    pub(crate) encoder: Encoder,
    pub(crate) decoder: Decoder,
}

impl Model {
    pub(crate) fn load(w: &Weights, dims: Dims) -> Result<Self> {
        // int8 is for the decoder, whose every step reads all its weights for a few rows:
        // on the encoder's 1500-row products candle's 8-bit kernels lose to its float32 gemm.
        let encoder_weights = Weights {
            map: w.map.clone(),
            device: w.device.clone(),
            precision: Precision::F32,
        };
        Ok(Self {
            encoder: Encoder::load(&encoder_weights, &dims)?,
            decoder: Decoder::load(w, &dims)?,
            dims,
        })
    }
}
