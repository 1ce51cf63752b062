//! EnCodec (`EncodecModel`) as MusicGen uses it: mono audio at 32 kHz ↔ residual-quantized
//! codes at 50 frames per second. The encoder (for continuing a song) and the decoder (to
//! render generated codes) mirror the reference's SEANet stacks layer for layer, under the
//! same `layers.<i>` names. [`Encodec::decode_chunked`] renders long code sequences in
//! overlapping windows, so memory follows the window, not the song.

mod layers;
mod quantizer;

use candle_core::{Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use crate::config::EncodecConfig;
use crate::{MusicgenError, Result};
use layers::{Conv, ConvTranspose, Lstm, Padding, ResBlock};
pub use quantizer::Quantizer;

const PREFIX: &str = "audio_encoder";

enum Layer {
    Conv(Conv),
    ConvT(ConvTranspose),
    Res(ResBlock),
    Lstm(Lstm),
    Elu,
}

impl Layer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Conv(c) => c.forward(x),
            Layer::ConvT(c) => c.forward(x),
            Layer::Res(r) => r.forward(x),
            Layer::Lstm(l) => l.forward(x),
            Layer::Elu => Ok(x.elu(1.0)?),
        }
    }
}

/// The layers in the reference's order, each with the index its weights are stored under.
enum Spec {
    Conv {
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    },
    ConvT {
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    },
    Res {
        dim: usize,
        dilations: [usize; 2],
    },
    Lstm {
        dim: usize,
    },
    Elu,
}

fn encoder_specs(c: &EncodecConfig) -> Vec<Spec> {
    let mut s = vec![Spec::Conv {
        cin: c.audio_channels,
        cout: c.num_filters,
        k: c.kernel_size,
        stride: 1,
    }];
    let mut scale = 1;
    for &ratio in c.upsampling_ratios.iter().rev() {
        let dim = scale * c.num_filters;
        for j in 0..c.num_residual_layers {
            s.push(Spec::Res {
                dim,
                dilations: [c.dilation_growth_rate.pow(j as u32), 1],
            });
        }
        s.push(Spec::Elu);
        s.push(Spec::Conv {
            cin: dim,
            cout: 2 * dim,
            k: 2 * ratio,
            stride: ratio,
        });
        scale *= 2;
    }
    s.push(Spec::Lstm {
        dim: scale * c.num_filters,
    });
    s.push(Spec::Elu);
    s.push(Spec::Conv {
        cin: scale * c.num_filters,
        cout: c.hidden_size,
        k: c.last_kernel_size,
        stride: 1,
    });
    s
}

fn decoder_specs(c: &EncodecConfig) -> Vec<Spec> {
    let mut scale = 1usize << c.upsampling_ratios.len();
    let mut s = vec![
        Spec::Conv {
            cin: c.hidden_size,
            cout: scale * c.num_filters,
            k: c.kernel_size,
            stride: 1,
        },
        Spec::Lstm {
            dim: scale * c.num_filters,
        },
    ];
    for &ratio in &c.upsampling_ratios {
        let dim = scale * c.num_filters;
        s.push(Spec::Elu);
        s.push(Spec::ConvT {
            cin: dim,
            cout: dim / 2,
            k: 2 * ratio,
            stride: ratio,
        });
        for j in 0..c.num_residual_layers {
            s.push(Spec::Res {
                dim: dim / 2,
                dilations: [c.dilation_growth_rate.pow(j as u32), 1],
            });
        }
        scale /= 2;
    }
    s.push(Spec::Elu);
    s.push(Spec::Conv {
        cin: c.num_filters,
        cout: c.audio_channels,
        k: c.last_kernel_size,
        stride: 1,
    });
    s
}

fn build(vb: VarBuilder, cfg: &EncodecConfig, specs: Vec<Spec>) -> Result<Vec<Layer>> {
    let pad = Padding::of(cfg);
    specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let vb = vb.pp(i.to_string());
            Ok(match s {
                Spec::Conv {
                    cin,
                    cout,
                    k,
                    stride,
                } => Layer::Conv(Conv::load(vb, cin, cout, k, stride, 1, pad)?),
                Spec::ConvT {
                    cin,
                    cout,
                    k,
                    stride,
                } => Layer::ConvT(ConvTranspose::load(vb, cin, cout, k, stride, pad)?),
                Spec::Res { dim, dilations } => {
                    Layer::Res(ResBlock::load(vb, cfg, dim, dilations)?)
                }
                Spec::Lstm { dim } => Layer::Lstm(Lstm::load(vb, dim, cfg.num_lstm_layers)?),
                Spec::Elu => Layer::Elu,
            })
        })
        .collect()
}

/// Every EnCodec tensor the loaders read, with its shape (see [`crate::weights`]).
pub(crate) fn expected_tensors(c: &EncodecConfig, add: &mut dyn FnMut(String, &[usize])) {
    let conv =
        |add: &mut dyn FnMut(String, &[usize]), p: String, g: usize, v: [usize; 3], bias: usize| {
            add(format!("{p}.conv.weight_g"), &[g, 1, 1]);
            add(format!("{p}.conv.weight_v"), &v);
            add(format!("{p}.conv.bias"), &[bias]);
        };
    for (part, specs) in [("encoder", encoder_specs(c)), ("decoder", decoder_specs(c))] {
        for (i, s) in specs.iter().enumerate() {
            let p = format!("{PREFIX}.{part}.layers.{i}");
            match *s {
                Spec::Conv { cin, cout, k, .. } => conv(add, p, cout, [cout, cin, k], cout),
                Spec::ConvT { cin, cout, k, .. } => conv(add, p, cin, [cin, cout, k], cout),
                Spec::Res { dim, .. } => {
                    let h = dim / c.compress;
                    conv(
                        add,
                        format!("{p}.block.1"),
                        h,
                        [h, dim, c.residual_kernel_size],
                        h,
                    );
                    conv(add, format!("{p}.block.3"), dim, [dim, h, 1], dim);
                    if c.use_conv_shortcut {
                        conv(add, format!("{p}.shortcut"), dim, [dim, dim, 1], dim);
                    }
                }
                Spec::Lstm { dim } => {
                    for l in 0..c.num_lstm_layers {
                        for w in ["weight_ih", "weight_hh"] {
                            add(format!("{p}.lstm.{w}_l{l}"), &[4 * dim, dim]);
                        }
                        for b in ["bias_ih", "bias_hh"] {
                            add(format!("{p}.lstm.{b}_l{l}"), &[4 * dim]);
                        }
                    }
                }
                Spec::Elu => {}
            }
        }
    }
    for q in 0..c.num_quantizers() {
        add(
            format!("{PREFIX}.quantizer.layers.{q}.codebook.embed"),
            &[c.codebook_size, c.codebook_dim()],
        );
    }
}

pub struct Encodec {
    cfg: EncodecConfig,
    device: Device,
    encoder: Vec<Layer>,
    /// The decoder up to and including its LSTM (at the frame rate), then the upsampling
    /// stack that chunked decoding runs window by window.
    decoder_head: Vec<Layer>,
    decoder_tail: Vec<Layer>,
    quantizer: Quantizer,
}

impl Encodec {
    pub fn load(vb: &VarBuilder, cfg: &EncodecConfig) -> Result<Self> {
        let encoder = build(
            vb.pp(PREFIX).pp("encoder").pp("layers"),
            cfg,
            encoder_specs(cfg),
        )?;
        let mut decoder = build(
            vb.pp(PREFIX).pp("decoder").pp("layers"),
            cfg,
            decoder_specs(cfg),
        )?;
        let decoder_tail = decoder.split_off(2);
        Ok(Self {
            cfg: cfg.clone(),
            device: vb.device().clone(),
            encoder,
            decoder_head: decoder,
            decoder_tail,
            quantizer: Quantizer::load(vb.pp(PREFIX).pp("quantizer"), cfg)?,
        })
    }

    pub fn config(&self) -> &EncodecConfig {
        &self.cfg
    }

    /// The encoder's output before quantization, `[hidden, frames]` (for tests and tools).
    pub fn embeddings(&self, wav: &[f32]) -> Result<Tensor> {
        if wav.is_empty() {
            return Err(MusicgenError::params("cannot encode empty audio"));
        }
        let mut x = Tensor::from_slice(wav, (1, 1, wav.len()), &self.device)?;
        for l in &self.encoder {
            x = l.forward(&x)?;
        }
        Ok(x.i(0)?)
    }

    /// Codes of mono audio at the codec's rate: `codebooks × frames`, frames =
    /// ⌈samples / hop⌉.
    pub fn encode(&self, wav: &[f32]) -> Result<Vec<Vec<u32>>> {
        let emb = self.embeddings(wav)?;
        self.quantizer.encode(&emb)
    }

    /// Audio of `codes` (`codebooks × frames`), `frames · hop` samples, in one pass.
    pub fn decode(&self, codes: &[Vec<u32>]) -> Result<Vec<f32>> {
        let x = self.decode_head(codes)?;
        let y = self.run_tail(&x)?;
        Ok(y.flatten_all()?.to_vec1::<f32>()?)
    }

    /// [`Encodec::decode`] in windows of `chunk` frames, each widened by enough neighbouring
    /// frames that the upsampling stack's edges fall outside what is kept: the same samples
    /// as one pass, with memory bounded by the window. `progress(done, total)` after each.
    pub fn decode_chunked(
        &self,
        codes: &[Vec<u32>],
        chunk: usize,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Vec<f32>> {
        let x = self.decode_head(codes)?;
        let frames = x.dim(2)?;
        let hop = self.cfg.hop_length();
        let chunk = chunk.max(1);
        let margin = self.tail_context_frames();
        let total = frames.div_ceil(chunk);
        let mut out = Vec::with_capacity(frames * hop);
        for (i, a) in (0..frames).step_by(chunk).enumerate() {
            let b = (a + chunk).min(frames);
            let (lo, hi) = (a.saturating_sub(margin), (b + margin).min(frames));
            let y = self.run_tail(&x.narrow(2, lo, hi - lo)?)?;
            let y = y.narrow(2, (a - lo) * hop, (b - a) * hop)?;
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
            if !progress(i + 1, total) {
                return Err(MusicgenError::Canceled);
            }
        }
        Ok(out)
    }

    fn decode_head(&self, codes: &[Vec<u32>]) -> Result<Tensor> {
        let mut x = self.quantizer.decode(codes, &self.device)?.unsqueeze(0)?;
        for l in &self.decoder_head {
            x = l.forward(&x)?;
        }
        Ok(x)
    }

    fn run_tail(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.decoder_tail {
            x = l.forward(&x)?;
        }
        Ok(x)
    }

    /// Frames of context on each side that an output sample of the upsampling stack depends
    /// on, bounded from above: walking back from the output, each convolution adds its reach
    /// in samples and each transposed convolution maps samples to input samples (its kernel
    /// spans two inputs). One frame more for safety.
    pub fn tail_context_frames(&self) -> usize {
        let mut reach = 0usize;
        for l in self.decoder_tail.iter().rev() {
            match l {
                Layer::Conv(c) => reach += c.reach(),
                Layer::Res(r) => reach += r.reach(),
                Layer::ConvT(c) => reach = (reach + c.kernel()).div_ceil(c.stride()),
                Layer::Lstm(_) | Layer::Elu => {}
            }
        }
        reach + 1
    }
}
