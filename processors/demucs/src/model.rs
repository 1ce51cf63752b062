//! The HTDemucs network: spectrogram and waveform encoders, the cross-domain transformer,
//! decoders, and the sum of both branches' outputs (`HTDemucs.forward` in inference mode).

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{Conv1d, VarBuilder};

use crate::config::HTDemucsConfig;
use crate::layers::{FreqDecoder, FreqEncoder, LayerSpec, TimeDecoder, TimeEncoder};
use crate::stft::{DftBasis, Spectrogram};
use crate::transformer::CrossTransformer;
use crate::{DemucsError, Result, SegmentModel};

/// 1x1 convolutions changing the width around the transformer (`bottom_channels`).
struct Bottom {
    up: Conv1d,
    down: Conv1d,
    up_t: Conv1d,
    down_t: Conv1d,
}

/// One Hybrid Transformer Demucs model.
pub struct HTDemucs {
    cfg: HTDemucsConfig,
    stft: Spectrogram,
    /// The convolutional STFT, used on devices other than the CPU.
    dft: Option<DftBasis>,
    encoder: Vec<FreqEncoder>,
    tencoder: Vec<TimeEncoder>,
    decoder: Vec<FreqDecoder>,
    tdecoder: Vec<TimeDecoder>,
    /// Frequency embedding already multiplied by its learning-rate scale: `[C, F, 1]`.
    freq_emb: Option<Tensor>,
    bottom: Option<Bottom>,
    transformer: Option<CrossTransformer>,
    device: Device,
}

/// What one encoder level saw, for the matching decoder.
struct Saved {
    skip: Tensor,
    skip_t: Tensor,
    length_t: usize,
}

impl HTDemucs {
    /// Builds the network from parameters named as in the reference state dict. On the CPU
    /// in float32 the encoders and decoders run on the fused kernels of [`crate::conv`] and
    /// [`crate::dconv`]; elsewhere on candle's ops.
    pub fn load(vb: VarBuilder, cfg: &HTDemucsConfig) -> Result<Self> {
        let fused = vb.device().is_cpu() && vb.dtype() == candle_core::DType::F32;
        Self::load_with(vb, cfg, fused)
    }

    /// [`HTDemucs::load`] on candle's ops only, as on a GPU: checks that path on a CPU.
    pub fn load_portable(vb: VarBuilder, cfg: &HTDemucsConfig) -> Result<Self> {
        Self::load_with(vb, cfg, false)
    }

    fn load_with(vb: VarBuilder, cfg: &HTDemucsConfig, fused: bool) -> Result<Self> {
        cfg.validate().map_err(DemucsError::InvalidInput)?;
        let sources = cfg.sources.len();
        let mut chin = cfg.audio_channels;
        let mut chin_z = 2 * chin;
        let mut chout = cfg.channels_time.unwrap_or(cfg.channels);
        let mut chout_z = cfg.channels;
        let mut freqs = cfg.nfft / 2;
        let (mut encoder, mut tencoder, mut decoder, mut tdecoder) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut freq_emb = None;
        for index in 0..cfg.depth {
            if freqs <= cfg.kernel_size {
                return Err(DemucsError::InvalidInput(format!(
                    "encoder level {index} would merge the branches (frequency axis of {freqs}); \
                     only configurations whose frequency axis stays above the kernel size are supported"
                )));
            }
            let norm = index >= cfg.norm_starts;
            let enc = LayerSpec {
                cin: chin_z,
                cout: chout_z,
                norm,
                dconv: cfg.dconv_mode & 1 != 0,
                fused,
            };
            let tenc = LayerSpec {
                cin: chin,
                cout: chout,
                ..enc
            };
            encoder.push(FreqEncoder::load(
                vb.pp("encoder").pp(index.to_string()),
                enc,
                cfg,
            )?);
            tencoder.push(TimeEncoder::load(
                vb.pp("tencoder").pp(index.to_string()),
                tenc,
                cfg,
            )?);
            if index == 0 {
                chin = cfg.audio_channels * sources;
                chin_z = 2 * chin;
            }
            let last = index == 0;
            let dec = LayerSpec {
                cin: chout_z,
                cout: chin_z,
                norm,
                dconv: cfg.dconv_mode & 2 != 0,
                fused,
            };
            let tdec = LayerSpec {
                cin: chout,
                cout: chin,
                ..dec
            };
            // Decoders are stored outermost-last, as the reference inserts them at the front.
            let pos = cfg.depth - 1 - index;
            decoder.push((
                pos,
                FreqDecoder::load(vb.pp("decoder").pp(pos.to_string()), dec, last, cfg)?,
            ));
            tdecoder.push((
                pos,
                TimeDecoder::load(vb.pp("tdecoder").pp(pos.to_string()), tdec, last, cfg)?,
            ));
            chin = chout;
            chin_z = chout_z;
            chout *= cfg.growth;
            chout_z *= cfg.growth;
            freqs /= cfg.stride;
            if index == 0 && cfg.freq_emb > 0.0 {
                let w = vb
                    .pp("freq_emb")
                    .pp("embedding")
                    .get((freqs, chin_z), "weight")?;
                let w = (w * (cfg.emb_scale * cfg.freq_emb))?;
                freq_emb = Some(w.t()?.unsqueeze(2)?.contiguous()?);
            }
        }
        decoder.sort_by_key(|(p, _)| *p);
        tdecoder.sort_by_key(|(p, _)| *p);
        let width = cfg.bottom_width();
        let bottom = if cfg.bottom_channels > 0 {
            let bc = cfg.bottom_channels;
            let c = |name: &str, i, o| candle_nn::conv1d(i, o, 1, Default::default(), vb.pp(name));
            Some(Bottom {
                up: c("channel_upsampler", width, bc)?,
                down: c("channel_downsampler", bc, width)?,
                up_t: c("channel_upsampler_t", width, bc)?,
                down_t: c("channel_downsampler_t", bc, width)?,
            })
        } else {
            None
        };
        let transformer = if cfg.t_layers > 0 {
            Some(CrossTransformer::load(
                vb.pp("crosstransformer"),
                cfg,
                fused,
            )?)
        } else {
            None
        };
        let device = vb.device().clone();
        let dft = if device.is_cpu() {
            None
        } else {
            Some(DftBasis::new(cfg.nfft, &device)?)
        };
        Ok(Self {
            cfg: cfg.clone(),
            stft: Spectrogram::new(cfg.nfft),
            dft,
            encoder,
            tencoder,
            decoder: decoder.into_iter().map(|(_, d)| d).collect(),
            tdecoder: tdecoder.into_iter().map(|(_, d)| d).collect(),
            freq_emb,
            bottom,
            transformer,
            device,
        })
    }

    /// Runs the STFT as convolutions even on the CPU (what GPUs use); for tests that prove
    /// that path against the reference where no GPU is at hand.
    pub fn use_dft_basis(&mut self) -> Result<()> {
        self.dft = Some(DftBasis::new(self.cfg.nfft, &self.device)?);
        Ok(())
    }

    pub fn config(&self) -> &HTDemucsConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `[B, C, L]` → `[B, S, C, L]`; inputs shorter than the training segment are padded with
    /// silence and the output trimmed back, as the reference does.
    pub fn forward(&self, mix: &Tensor) -> Result<Tensor> {
        self.forward_traced(mix, &mut |_, _| {})
    }

    /// [`Self::forward`], handing named intermediates to `trace` (for fidelity tests).
    pub fn forward_traced(
        &self,
        mix: &Tensor,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let (b, channels, length) = mix.dims3()?;
        if channels != self.cfg.audio_channels {
            return Err(DemucsError::InvalidInput(format!(
                "the model takes {} channels, got {channels}",
                self.cfg.audio_channels
            )));
        }
        let training = self.cfg.segment_samples();
        if length > training {
            return Err(DemucsError::InvalidInput(format!(
                "segment of {length} samples is longer than the model's {training}"
            )));
        }
        let mix = mix
            .to_device(&self.device)?
            .to_dtype(candle_core::DType::F32)?;
        let mix = if length < training {
            mix.pad_with_zeros(D::Minus1, 0, training - length)?
        } else {
            mix
        };
        let z = match &self.dft {
            Some(d) => d.spec_cac(&mix)?,
            None => self.stft.spec_cac(&mix)?,
        };
        trace("spec", &z);
        let (_, _, fq, frames) = z.dims4()?;
        let (x, mean, std) = normalise(&z)?;
        let (xt, meant, stdt) = normalise(&mix)?;
        let (mut x, mut xt) = (x, xt);
        let mut saved = Vec::with_capacity(self.cfg.depth);
        for (idx, (enc, tenc)) in self.encoder.iter().zip(&self.tencoder).enumerate() {
            let length_t = xt.dim(D::Minus1)?;
            xt = tenc.forward(&xt)?;
            trace(&format!("tencoder.{idx}"), &xt);
            x = enc.forward(&x)?;
            trace(&format!("encoder.{idx}"), &x);
            if idx == 0 {
                if let Some(emb) = &self.freq_emb {
                    x = x.broadcast_add(&emb.unsqueeze(0)?)?;
                }
            }
            saved.push(Saved {
                skip: x.clone(),
                skip_t: xt.clone(),
                length_t,
            });
        }
        if let Some(tr) = &self.transformer {
            if let Some(bt) = &self.bottom {
                let (bb, c, f, t) = x.dims4()?;
                x = bt
                    .up
                    .forward(&x.reshape((bb, c, f * t))?)?
                    .reshape((bb, (), f, t))?;
                xt = bt.up_t.forward(&xt)?;
            }
            (x, xt) = tr.forward(&x, &xt)?;
            trace("transformer.x", &x);
            trace("transformer.xt", &xt);
            if let Some(bt) = &self.bottom {
                let (bb, c, f, t) = x.dims4()?;
                x = bt
                    .down
                    .forward(&x.reshape((bb, c, f * t))?)?
                    .reshape((bb, (), f, t))?;
                xt = bt.down_t.forward(&xt)?;
            }
        }
        for (idx, (dec, tdec)) in self.decoder.iter().zip(&self.tdecoder).enumerate() {
            let s = saved.pop().expect("one saved level per decoder");
            x = dec.forward(&x, &s.skip)?;
            trace(&format!("decoder.{idx}"), &x);
            xt = tdec.forward(&xt, &s.skip_t, s.length_t)?;
            trace(&format!("tdecoder.{idx}"), &xt);
        }
        let sources = self.cfg.sources.len();
        let x = x.reshape((b, sources, (), fq, frames))?;
        let x = x
            .broadcast_mul(&std.unsqueeze(1)?)?
            .broadcast_add(&mean.unsqueeze(1)?)?;
        let x = match &self.dft {
            Some(d) => d.ispec_cac(&x, training)?,
            None => self.stft.ispec_cac(&x, training)?,
        };
        let xt = xt.reshape((b, sources, channels, training))?;
        let xt = xt
            .broadcast_mul(&stdt.unsqueeze(1)?)?
            .broadcast_add(&meant.unsqueeze(1)?)?;
        let out = (xt + x)?;
        Ok(if length < training {
            out.narrow(D::Minus1, 0, length)?.contiguous()?
        } else {
            out
        })
    }
}

/// `(x - mean) / (1e-5 + std)` over every dimension but the batch, with the unbiased std
/// (`torch.std`'s default). Returns the statistics shaped to broadcast back.
fn normalise(x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let dims = x.dims().to_vec();
    let b = dims[0];
    let n: usize = dims[1..].iter().product();
    let flat = x.reshape((b, n))?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let std = (centred.sqr()?.sum_keepdim(1)? / (n as f64 - 1.0))?.sqrt()?;
    let normed = centred
        .broadcast_div(&(&std + 1e-5)?)?
        .reshape(dims.as_slice())?;
    let mut shape = vec![1usize; dims.len()];
    shape[0] = b;
    Ok((
        normed,
        mean.reshape(shape.as_slice())?,
        std.reshape(shape.as_slice())?,
    ))
}

impl SegmentModel for HTDemucs {
    fn sources(&self) -> &[String] {
        &self.cfg.sources
    }
    fn audio_channels(&self) -> usize {
        self.cfg.audio_channels
    }
    fn samplerate(&self) -> u32 {
        self.cfg.samplerate
    }
    fn segment_samples(&self) -> usize {
        self.cfg.segment_samples()
    }
    fn forward(&self, mix: &Tensor) -> Result<Tensor> {
        HTDemucs::forward(self, mix)
    }
}
