//! The spectrogram branch's STFT and inverse, bit-for-bit the conventions of the reference
//! (`torch.stft` / `torch.istft` with a periodic Hann window, `center=True`, reflect padding,
//! `normalized=True`) plus HTDemucs' own framing (`_spec` / `_ispec`): the signal is
//! reflect-padded by 1.5 hops so that frame `t` of the output is centred on sample `t * hop`,
//! the Nyquist bin and two frames at each end are dropped, and complex values travel as pairs
//! of real channels (complex-as-channels). candle has no FFT, so on the CPU this runs with
//! realfft, one signal per rayon task; on a GPU the transforms are convolutions with a
//! windowed DFT basis ([`DftBasis`]): a strided conv1d for the analysis and a transposed one
//! (whose overlap-add is the iSTFT's) for the synthesis, so the spectrogram never leaves the
//! device.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::Result;

/// STFT planner for one `nfft` (hop = nfft / 4, as HTDemucs requires).
pub struct Spectrogram {
    nfft: usize,
    hop: usize,
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl Spectrogram {
    pub fn new(nfft: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        // Periodic Hann, as torch.hann_window's default.
        let window = (0..nfft)
            .map(|n| {
                let x = 2.0 * std::f64::consts::PI * n as f64 / nfft as f64;
                (0.5 - 0.5 * x.cos()) as f32
            })
            .collect();
        Self {
            nfft,
            hop: nfft / 4,
            window,
            forward: planner.plan_fft_forward(nfft),
            inverse: planner.plan_fft_inverse(nfft),
        }
    }

    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Frames HTDemucs keeps for a signal of `length` samples.
    pub fn frames(&self, length: usize) -> usize {
        length.div_ceil(self.hop)
    }

    /// `_spec` then `_magnitude` with complex as channels: `[B, C, L]` →
    /// `[B, 2C, nfft/2, ceil(L/hop)]`, channel `2c` the real and `2c+1` the imaginary part.
    pub fn spec_cac(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, l) = x.dims3()?;
        let rows: Vec<Vec<f32>> = x
            .to_dtype(candle_core::DType::F32)?
            .reshape((b * c, l))?
            .to_vec2()?;
        let bins = self.nfft / 2;
        let frames = self.frames(l);
        let plane = bins * frames;
        let mut out = vec![0f32; b * c * 2 * plane];
        out.par_chunks_mut(2 * plane)
            .zip(rows.par_iter())
            .for_each(|(dst, row)| self.spec_row(row, dst, frames));
        Ok(Tensor::from_vec(out, (b, 2 * c, bins, frames), &Device::Cpu)?.to_device(x.device())?)
    }

    /// One signal into `dst` = [re plane | im plane], each `[bins, frames]`.
    fn spec_row(&self, row: &[f32], dst: &mut [f32], frames: usize) {
        let (nfft, hop) = (self.nfft, self.hop);
        let bins = nfft / 2;
        // HTDemucs' own padding, then torch.stft's centre padding, both reflective.
        let pad = hop / 2 * 3;
        let inner = reflect_pad(row, pad, pad + frames * hop - row.len());
        let padded = reflect_pad(&inner, nfft / 2, nfft / 2);
        let scale = 1.0 / (nfft as f32).sqrt();
        let mut buf = self.forward.make_input_vec();
        let mut spec = self.forward.make_output_vec();
        let mut scratch = self.forward.make_scratch_vec();
        let (re, im) = dst.split_at_mut(bins * frames);
        for t in 0..frames {
            // Frames 0 and 1 of the padded STFT are dropped by `_spec`.
            let start = (t + 2) * hop;
            for (i, v) in buf.iter_mut().enumerate() {
                *v = padded[start + i] * self.window[i];
            }
            self.forward
                .process_with_scratch(&mut buf, &mut spec, &mut scratch)
                .expect("fft buffers sized by the planner");
            for f in 0..bins {
                re[f * frames + t] = spec[f].re * scale;
                im[f * frames + t] = spec[f].im * scale;
            }
        }
    }

    /// `_mask` then `_ispec`: `[B, S, 2C, nfft/2, T]` (complex as channels) →
    /// `[B, S, C, length]`.
    pub fn ispec_cac(&self, z: &Tensor, length: usize) -> Result<Tensor> {
        let (b, s, c2, bins, frames) = z.dims5()?;
        if bins != self.nfft / 2 || c2 % 2 != 0 {
            return Err(crate::DemucsError::InvalidInput(format!(
                "ispec expects [B, S, 2C, {}, T], got {:?}",
                self.nfft / 2,
                z.dims()
            )));
        }
        let data: Vec<f32> = z
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let plane = bins * frames;
        let signals = b * s * c2 / 2;
        let mut out = vec![0f32; signals * length];
        out.par_chunks_mut(length).enumerate().for_each(|(i, dst)| {
            let src = &data[i * 2 * plane..(i + 1) * 2 * plane];
            let (re, im) = src.split_at(plane);
            self.ispec_row(re, im, frames, dst);
        });
        Ok(Tensor::from_vec(out, (b, s, c2 / 2, length), &Device::Cpu)?.to_device(z.device())?)
    }

    fn ispec_row(&self, re: &[f32], im: &[f32], frames: usize, dst: &mut [f32]) {
        let (nfft, hop) = (self.nfft, self.hop);
        let bins = nfft / 2;
        // `_ispec` adds a zero Nyquist bin and two silent frames at each end before istft.
        let total = frames + 4;
        let full_len = nfft + hop * (total - 1);
        let mut acc = vec![0f32; full_len];
        let mut env = vec![0f32; full_len];
        let mut spec = self.inverse.make_input_vec();
        let mut buf = self.inverse.make_output_vec();
        let mut scratch = self.inverse.make_scratch_vec();
        // normalized=True undoes the forward's 1/sqrt(n); the inverse FFT is unnormalised.
        let scale = (nfft as f32).sqrt() / nfft as f32;
        for t in 0..total {
            let start = t * hop;
            for (i, w) in self.window.iter().enumerate() {
                env[start + i] += w * w;
            }
            if t < 2 || t >= frames + 2 {
                continue;
            }
            let k = t - 2;
            for f in 0..bins {
                spec[f] = Complex32::new(re[f * frames + k], im[f * frames + k]);
            }
            spec[bins] = Complex32::new(0.0, 0.0);
            spec[0].im = 0.0;
            self.inverse
                .process_with_scratch(&mut spec, &mut buf, &mut scratch)
                .expect("fft buffers sized by the planner");
            for (i, v) in buf.iter().enumerate() {
                acc[start + i] += v * scale * self.window[i];
            }
        }
        // torch.istft trims nfft/2 for centring; `_ispec` then drops its 1.5-hop padding.
        let offset = nfft / 2 + hop / 2 * 3;
        for (i, d) in dst.iter_mut().enumerate() {
            let j = offset + i;
            *d = if env[j] > 1e-11 { acc[j] / env[j] } else { 0.0 };
        }
    }
}

/// The STFT as convolutions with a windowed DFT basis, for devices without realfft.
pub struct DftBasis {
    /// `[2 * bins, 1, nfft]`: rows `f` give Re X[f], rows `bins + f` Im X[f] (window and
    /// normalisation included).
    analysis: Tensor,
    /// `[2 * bins, nfft]`: the windowed inverse transform of each real and imaginary bin.
    synthesis: Tensor,
    /// Sum of squared windows over the frames of a segment, computed on the host per length.
    nfft: usize,
    hop: usize,
    window: Vec<f32>,
}

impl DftBasis {
    pub fn new(nfft: usize, device: &Device) -> Result<Self> {
        let bins = nfft / 2;
        let window: Vec<f32> = (0..nfft)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / nfft as f64).cos()) as f32
            })
            .collect();
        let fwd_scale = 1.0 / (nfft as f64).sqrt();
        let inv_scale = (nfft as f64).sqrt() / nfft as f64;
        let mut analysis = vec![0f32; 2 * bins * nfft];
        let mut synthesis = vec![0f32; 2 * bins * nfft];
        for f in 0..bins {
            // Only the kept bins: the reference drops Nyquist, and the inverse sees it as zero.
            let weight = if f == 0 { 1.0 } else { 2.0 };
            for n in 0..nfft {
                // (f * n) mod nfft keeps the angle small, so the basis is exact to float64.
                let phase = 2.0 * std::f64::consts::PI * ((f * n) % nfft) as f64 / nfft as f64;
                let w = f64::from(window[n]);
                analysis[f * nfft + n] = (w * phase.cos() * fwd_scale) as f32;
                analysis[(bins + f) * nfft + n] = (-w * phase.sin() * fwd_scale) as f32;
                synthesis[f * nfft + n] = (weight * w * phase.cos() * inv_scale) as f32;
                synthesis[(bins + f) * nfft + n] = (-weight * w * phase.sin() * inv_scale) as f32;
            }
        }
        Ok(Self {
            analysis: Tensor::from_vec(analysis, (2 * bins, 1, nfft), device)?,
            synthesis: Tensor::from_vec(synthesis, (2 * bins, nfft), device)?,
            nfft,
            hop: nfft / 4,
            window,
        })
    }

    /// As [`Spectrogram::spec_cac`].
    pub fn spec_cac(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, l) = x.dims3()?;
        let (nfft, hop) = (self.nfft, self.hop);
        let bins = nfft / 2;
        let frames = l.div_ceil(hop);
        // Reflect padding on the host: a few MB, and candle has no reflect pad.
        let rows: Vec<Vec<f32>> = x
            .to_dtype(candle_core::DType::F32)?
            .reshape((b * c, l))?
            .to_vec2()?;
        let pad = hop / 2 * 3;
        let padded: Vec<f32> = rows
            .iter()
            .flat_map(|r| {
                let inner = reflect_pad(r, pad, pad + frames * hop - r.len());
                reflect_pad(&inner, nfft / 2, nfft / 2)
            })
            .collect();
        let lp = padded.len() / (b * c);
        let signal = Tensor::from_vec(padded, (b * c, 1, lp), &Device::Cpu)?
            .to_device(self.analysis.device())?;
        let z = signal.conv1d(&self.analysis, 0, hop, 1, 1)?; // [N, 2 bins, frames + 4]
        let z = z.narrow(2, 2, frames)?.reshape((b, c, 2, bins, frames))?;
        Ok(z.reshape((b, 2 * c, bins, frames))?.to_device(x.device())?)
    }

    /// As [`Spectrogram::ispec_cac`].
    pub fn ispec_cac(&self, z: &Tensor, length: usize) -> Result<Tensor> {
        let (b, s, c2, bins, frames) = z.dims5()?;
        let (nfft, hop) = (self.nfft, self.hop);
        let n = b * s * c2 / 2;
        let z = z
            .to_device(self.synthesis.device())?
            .reshape((n, 2 * bins, frames))?;
        // Two silent frames at each end, as `_ispec` pads before istft.
        let z = z.pad_with_zeros(2, 2, 2)?;
        let total = frames + 4;
        let y = crate::device_conv::conv_transpose1d(&z, &self.synthesis.unsqueeze(1)?, hop)?; // [N, 1, len]
        let full_len = nfft + hop * (total - 1);
        let mut env = vec![0f32; full_len];
        for t in 0..total {
            for (i, w) in self.window.iter().enumerate() {
                env[t * hop + i] += w * w;
            }
        }
        let offset = nfft / 2 + hop / 2 * 3;
        let inv: Vec<f32> = env[offset..offset + length]
            .iter()
            .map(|e| if *e > 1e-11 { 1.0 / e } else { 0.0 })
            .collect();
        let inv = Tensor::from_vec(inv, (1, 1, length), y.device())?;
        let y = y.narrow(2, offset, length)?.broadcast_mul(&inv)?;
        Ok(y.reshape((b, s, c2 / 2, length))?.to_device(z.device())?)
    }
}

/// `pad1d(..., mode="reflect")` of the reference: reflection without repeating the edge, and
/// zeros first when the signal is too short to reflect that far.
pub fn reflect_pad(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let (mut left, mut right) = (left, right);
    let mut base: Vec<f32> = x.to_vec();
    let max_pad = left.max(right);
    if base.len() <= max_pad {
        let extra = max_pad - base.len() + 1;
        let extra_right = right.min(extra);
        let extra_left = extra - extra_right;
        left -= extra_left;
        right -= extra_right;
        let mut z = vec![0f32; extra_left];
        z.extend_from_slice(&base);
        z.extend(std::iter::repeat_n(0f32, extra_right));
        base = z;
    }
    let n = base.len();
    let mut out = Vec::with_capacity(n + left + right);
    out.extend((0..left).map(|i| base[left - i]));
    out.extend_from_slice(&base);
    out.extend((0..right).map(|j| base[n - 2 - j]));
    out
}

#[cfg(test)]
mod tests {
    use roar_testkit::assert_close;
    use roar_testkit::tensor::assert_tensor_close;

    use super::*;

    #[test]
    fn reflect_pad_matches_torch() {
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2, 3),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
        );
        // Too short to reflect: zeros are inserted first, as pad1d does.
        let p = reflect_pad(&[1.0, 2.0], 3, 3);
        assert_eq!(p.len(), 8);
        assert_eq!(&p[3..5], &[1.0, 2.0]);
    }

    #[test]
    fn dft_basis_path_matches_realfft() {
        let stft = Spectrogram::new(512);
        let basis = DftBasis::new(512, &Device::Cpu).unwrap();
        let n = 5000;
        let x = Tensor::randn(0f32, 0.3, (2, 2, n), &Device::Cpu).unwrap();
        let a = stft.spec_cac(&x).unwrap();
        let b = basis.spec_cac(&x).unwrap();
        assert_tensor_close("analysis", &a, &b, 1e-4);
        let z = Tensor::randn(0f32, 1.0, (1, 3, 4, 256, n.div_ceil(128)), &Device::Cpu).unwrap();
        let p = stft.ispec_cac(&z, n).unwrap();
        let q = basis.ispec_cac(&z, n).unwrap();
        assert_tensor_close("synthesis", &p, &q, 1e-4);
    }

    #[test]
    fn spec_then_ispec_reconstructs() {
        let stft = Spectrogram::new(256);
        let n = 3000;
        let sig: Vec<f32> = (0..2 * n)
            .map(|i| ((i as f32) * 0.013).sin() + 0.3 * ((i as f32) * 0.17).cos())
            .collect();
        let x = Tensor::from_vec(sig.clone(), (1, 2, n), &Device::Cpu).unwrap();
        let z = stft.spec_cac(&x).unwrap();
        assert_eq!(z.dims(), &[1, 4, 128, n.div_ceil(64)]);
        let y = stft.ispec_cac(&z.unsqueeze(1).unwrap(), n).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        // `_spec` drops the two outer frames at each end, so (as in the reference) only the
        // interior, at least 1.5 hops from either edge, reconstructs exactly.
        assert_eq!(y.len(), 2 * n);
        for c in 0..2 {
            let inner = c * n + 128..(c + 1) * n - 128;
            let what = format!("channel {c}");
            assert_close(&what, &y[inner.clone()], &sig[inner], 1e-4);
        }
    }
}
