//! The DConv residual branch that every encoder and decoder layer carries: per layer, a
//! dilated conv down to `channels / compress`, GroupNorm(1) + GELU, a 1x1 conv up to twice the
//! channels, GroupNorm(1), GLU and a learnt per-channel scale, added to the input.
//!
//! On the CPU the whole branch is one kernel. The branch runs along time for each item (each
//! frequency row of the frequency branch, each batch item of the time branch), and a
//! frequency-branch item (`[C, T]`, 64 KB for the outer layer) fits in L2: one task reads it
//! from the `[B, C, F, T]` tensor as it lies, runs every layer on it in cache with the norms'
//! affine maps folded into the GELU and GLU passes, and writes it back once. The step-by-step
//! version made ten passes over 66 MB tensors and two permutes per layer. A time-branch item
//! is one long sequence; it runs in blocks, with the norms' statistics merged across blocks
//! and the cheap 1x1 conv recomputed rather than stored.
//! Other devices run candle's ops.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};
use rayon::prelude::*;

use crate::config::HTDemucsConfig;
use crate::fast::{self, affine_in_place, axpy, contiguous, glu_residual, GroupNorm, Stats};
use crate::parallel::{every, whole, Blocks};
use crate::Result;

/// Time steps per task for long items; the 1x1 conv's output (`2C × BLOCK`) stays in L2.
const BLOCK: usize = 2048;

/// The DConv branch of one encoder or decoder layer.
pub struct DConv {
    imp: Imp,
}

enum Imp {
    Cpu(Vec<CpuLayer>),
    Device(Vec<DeviceLayer>),
}

struct DeviceLayer {
    conv: Conv1d,
    norm1: GroupNorm,
    proj: Conv1d,
    norm2: GroupNorm,
    scale: Tensor,
}

/// One layer's parameters as plain slices.
struct CpuLayer {
    /// `[hidden][channels][k]`
    conv: Vec<f32>,
    conv_b: Vec<f32>,
    norm1: (Vec<f32>, Vec<f32>),
    /// `[2·channels][hidden]`
    proj: Vec<f32>,
    proj_b: Vec<f32>,
    norm2: (Vec<f32>, Vec<f32>),
    scale: Vec<f32>,
    /// Offset of each tap from the output position (dilated, centred).
    shifts: Vec<isize>,
    /// The conv and the 1x1 conv as AVX-512 register tiles, where the CPU has them.
    #[cfg(target_arch = "x86_64")]
    tiles: Option<(crate::rows_x86::Packed, crate::rows_x86::Packed)>,
}

const EPS: f64 = 1e-5;

impl DConv {
    /// `fused`: the CPU kernel (float32 weights on the CPU only), else candle's ops.
    pub fn load(
        vb: VarBuilder,
        channels: usize,
        cfg: &HTDemucsConfig,
        fused: bool,
    ) -> Result<Self> {
        let hidden = channels / cfg.dconv_comp;
        let k = 3;
        let vb = vb.pp("layers");
        let mut cpu = Vec::new();
        let mut device = Vec::new();
        for d in 0..cfg.dconv_depth {
            let vb = vb.pp(d.to_string());
            let dilation = 1usize << d;
            let conv_w = vb.pp("0").get((hidden, channels, k), "weight")?;
            let conv_b = vb.pp("0").get(hidden, "bias")?;
            let proj_w = vb.pp("3").get((2 * channels, hidden, 1), "weight")?;
            let proj_b = vb.pp("3").get(2 * channels, "bias")?;
            let n1 = (
                vb.pp("1").get(hidden, "weight")?,
                vb.pp("1").get(hidden, "bias")?,
            );
            let n2 = (
                vb.pp("4").get(2 * channels, "weight")?,
                vb.pp("4").get(2 * channels, "bias")?,
            );
            let scale = vb.pp("6").get(channels, "scale")?;
            if fused {
                let v = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
                let (conv, conv_b, proj, proj_b) =
                    (v(&conv_w)?, v(&conv_b)?, v(&proj_w)?, v(&proj_b)?);
                #[cfg(target_arch = "x86_64")]
                let tiles = crate::rows_x86::available().then(|| {
                    use crate::rows_x86::Packed;
                    (
                        Packed::new(&conv, &conv_b, channels, k),
                        Packed::new(&proj, &proj_b, hidden, 1),
                    )
                });
                cpu.push(CpuLayer {
                    conv,
                    conv_b,
                    norm1: (v(&n1.0)?, v(&n1.1)?),
                    proj,
                    proj_b,
                    norm2: (v(&n2.0)?, v(&n2.1)?),
                    scale: v(&scale)?,
                    shifts: (0..k)
                        .map(|j| ((j as isize) - (k / 2) as isize) * dilation as isize)
                        .collect(),
                    #[cfg(target_arch = "x86_64")]
                    tiles,
                });
            } else {
                let conv_cfg = Conv1dConfig {
                    padding: dilation * (k / 2),
                    dilation,
                    ..Default::default()
                };
                device.push(DeviceLayer {
                    conv: Conv1d::new(conv_w, Some(conv_b), conv_cfg),
                    norm1: GroupNorm::new(n1.0, n1.1, 1),
                    proj: Conv1d::new(proj_w, Some(proj_b), Conv1dConfig::default()),
                    norm2: GroupNorm::new(n2.0, n2.1, 1),
                    scale: scale.reshape((1, channels, 1))?,
                });
            }
        }
        Ok(Self {
            imp: if fused {
                Imp::Cpu(cpu)
            } else {
                Imp::Device(device)
            },
        })
    }

    /// Along time of a time-branch tensor `[N, C, T]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.imp {
            Imp::Cpu(layers) => Ok(x
                .unsqueeze(2)?
                .contiguous()?
                .apply_op1_no_bwd(&Fused { layers })?
                .squeeze(2)?),
            Imp::Device(layers) => device_forward(layers, x),
        }
    }

    /// Along time of each frequency row of a frequency-branch tensor `[B, C, F, T]`.
    pub fn forward_freq(&self, x: &Tensor) -> Result<Tensor> {
        match &self.imp {
            Imp::Cpu(layers) => Ok(x.contiguous()?.apply_op1_no_bwd(&Fused { layers })?),
            Imp::Device(layers) => {
                let (b, c, f, t) = x.dims4()?;
                let z = x.permute((0, 2, 1, 3))?.reshape((b * f, c, t))?;
                let z = device_forward(layers, &z)?;
                Ok(z.reshape((b, f, c, t))?
                    .permute((0, 2, 1, 3))?
                    .contiguous()?)
            }
        }
    }
}

fn device_forward(layers: &[DeviceLayer], x: &Tensor) -> Result<Tensor> {
    let mut x = x.clone();
    for l in layers {
        let y = l.norm1.forward(&l.conv.forward(&x)?, true)?;
        let y = fast::glu(&l.norm2.forward(&l.proj.forward(&y)?, false)?)?;
        x = (x + y.broadcast_mul(&l.scale)?)?;
    }
    Ok(x)
}

/// Per-channel `(scale, shift)` of the affine GroupNorm(1) with statistics `st`.
fn affine(st: Stats, weight: &[f32], bias: &[f32]) -> Vec<(f32, f32)> {
    let inv = 1.0 / (st.var() + EPS).sqrt();
    weight
        .iter()
        .zip(bias)
        .map(|(w, b)| {
            let s = inv * f64::from(*w);
            (s as f32, (f64::from(*b) - st.mean * s) as f32)
        })
        .collect()
}

impl CpuLayer {
    fn hidden(&self) -> usize {
        self.conv_b.len()
    }

    fn channels(&self) -> usize {
        self.scale.len()
    }

    /// `out[h, 0..w] = conv(x)` at columns `t0..t0+w` of an item `x` of `[C, t]`, zero
    /// outside the item.
    fn conv_block(&self, x: &[f32], t: usize, t0: usize, out: &mut [f32]) {
        let (c_in, k) = (self.channels(), self.shifts.len());
        let w = out.len() / self.hidden();
        #[cfg(target_arch = "x86_64")]
        if let Some((conv, _)) = &self.tiles {
            let src = crate::rows_x86::Source {
                x,
                stride: t,
                len: t,
                start: t0,
                shifts: &self.shifts,
            };
            return crate::rows_x86::conv(conv, &src, out, w);
        }
        for (h, y) in out.chunks_mut(w).enumerate() {
            y.fill(self.conv_b[h]);
            for c in 0..c_in {
                let x = &x[c * t..(c + 1) * t];
                for (j, &shift) in self.shifts.iter().enumerate() {
                    // y[t] += wt · x[t0 + t + shift] where that index is inside the item.
                    let lo = (-(t0 as isize) - shift).max(0) as usize;
                    let hi = (x.len() as isize - t0 as isize - shift).clamp(0, w as isize) as usize;
                    if lo < hi {
                        let src = (t0 as isize + lo as isize + shift) as usize;
                        axpy(
                            &mut y[lo..hi],
                            self.conv[(h * c_in + c) * k + j],
                            &x[src..src + hi - lo],
                        );
                    }
                }
            }
        }
    }

    /// `y[o, :] = proj_b[o] + Σ_h proj[o, h] · hid[h, :]`.
    fn project(&self, hid: &[f32], y: &mut [f32]) {
        let hidden = self.hidden();
        let w = hid.len() / hidden;
        #[cfg(target_arch = "x86_64")]
        if let Some((_, proj)) = &self.tiles {
            let src = crate::rows_x86::Source {
                x: hid,
                stride: w,
                len: w,
                start: 0,
                shifts: &[0],
            };
            return crate::rows_x86::conv(proj, &src, y, w);
        }
        for (o, y) in y.chunks_mut(w).enumerate() {
            y.fill(self.proj_b[o]);
            for (h, x) in hid.chunks(w).enumerate() {
                axpy(y, self.proj[o * hidden + h], x);
            }
        }
    }

    /// `hid` (normalised in place, then GELU) → the 1x1 conv into `y`.
    fn activate_project(&self, hid: &mut [f32], n1: &[(f32, f32)], y: &mut [f32]) {
        let w = hid.len() / self.hidden();
        for (h, r) in hid.chunks_mut(w).enumerate() {
            affine_in_place(r, n1[h].0, n1[h].1, true);
        }
        self.project(hid, y);
    }

    /// `x[c, :] += scale[c] · glu(norm2(y))[c, :]` for the rows of one block.
    fn residual<'a>(
        &self,
        y: &[f32],
        n2: &[(f32, f32)],
        mut out: impl FnMut(usize) -> &'a mut [f32],
    ) {
        let c = self.channels();
        let w = y.len() / (2 * c);
        for ch in 0..c {
            let (a, g) = (&y[ch * w..(ch + 1) * w], &y[(c + ch) * w..(c + ch + 1) * w]);
            glu_residual(out(ch), a, g, n2[ch], n2[c + ch], self.scale[ch]);
        }
    }
}

/// Per-thread scratch for one item or block.
#[derive(Default)]
struct Scratch {
    item: Vec<f32>,
    hid: Vec<f32>,
    y: Vec<f32>,
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

struct Fused<'a> {
    layers: &'a [CpuLayer],
}

impl Fused<'_> {
    /// Every layer on one short item `[C, T]` held in `s.item`.
    fn item_in_cache(&self, s: &mut Scratch, t: usize) {
        for l in self.layers {
            let (c, hidden) = (l.channels(), l.hidden());
            let item = &mut s.item[..c * t];
            let hid = sized(&mut s.hid, hidden * t);
            l.conv_block(item, t, 0, hid);
            let n1 = affine(Stats::of(hid), &l.norm1.0, &l.norm1.1);
            let y = sized(&mut s.y, 2 * c * t);
            l.activate_project(hid, &n1, y);
            let n2 = affine(Stats::of(y), &l.norm2.0, &l.norm2.1);
            let mut rows = item.chunks_mut(t);
            l.residual(y, &n2, |_| rows.next().expect("one row per channel"));
        }
    }

    /// Every layer on one long item (`x`: `[C, T]`, updated in place), in blocks of time.
    fn long_item(&self, x: &mut [f32], t: usize) {
        let blocks: Vec<usize> = (0..t).step_by(BLOCK).collect();
        for l in self.layers {
            let hidden = l.hidden();
            // The dilated conv reads neighbouring blocks, so it finishes before x changes.
            let mut hid = vec![0f32; hidden * t];
            let parts: Vec<(Vec<f32>, Stats)> = blocks
                .par_iter()
                .map(|&t0| {
                    let w = BLOCK.min(t - t0);
                    let mut out = vec![0f32; hidden * w];
                    l.conv_block(x, t, t0, &mut out);
                    let st = Stats::of(&out);
                    (out, st)
                })
                .collect();
            let mut s1 = Stats::default();
            for (&t0, (part, st)) in blocks.iter().zip(&parts) {
                let w = part.len() / hidden;
                for h in 0..hidden {
                    hid[h * t + t0..h * t + t0 + w].copy_from_slice(&part[h * w..(h + 1) * w]);
                }
                s1 = s1.merge(*st);
            }
            drop(parts);
            let n1 = affine(s1, &l.norm1.0, &l.norm1.1);
            let c = l.channels();
            // The block's 1x1 conv output, from the stored conv output.
            let project = |t0: usize, s: &mut Scratch| -> usize {
                let w = BLOCK.min(t - t0);
                let hb = sized(&mut s.hid, hidden * w);
                for h in 0..hidden {
                    hb[h * w..(h + 1) * w].copy_from_slice(&hid[h * t + t0..h * t + t0 + w]);
                }
                let y = sized(&mut s.y, 2 * c * w);
                l.activate_project(hb, &n1, y);
                w
            };
            let s2 = blocks
                .par_iter()
                .map_init(Scratch::default, |s, &t0| {
                    let w = project(t0, s);
                    Stats::of(&s.y[..2 * c * w])
                })
                .reduce(Stats::default, Stats::merge);
            let n2 = affine(s2, &l.norm2.0, &l.norm2.1);
            // Each task updates its own columns t0..t0+w of every row of x.
            let xb = Blocks::new(x, (c, t), whole(c), every(t, BLOCK));
            blocks
                .par_iter()
                .enumerate()
                .for_each_init(Scratch::default, |s, (i, &t0)| {
                    let w = project(t0, s);
                    let mut rows = xb.take(0, i).into_rows();
                    l.residual(&s.y[..2 * c * w], &n2, |_| {
                        rows.next().expect("one row per channel")
                    });
                });
        }
    }
}

impl CustomOp1 for Fused<'_> {
    fn name(&self) -> &'static str {
        "roar-dconv"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous(s, l)?;
        let (b, c, f, t) = l.shape().dims4()?;
        if t == 0 {
            candle_core::bail!("dconv: an empty time axis");
        }
        if let Some(first) = self.layers.first() {
            if first.channels() != c {
                candle_core::bail!("dconv: {c} channels, weights for {}", first.channels());
            }
        }
        let mut out;
        if t > BLOCK {
            out = src.to_vec();
            for item in out.chunks_mut(c * f * t) {
                // A long item is one frequency row only in the time branch (F = 1).
                if f != 1 {
                    candle_core::bail!("dconv: {f} rows of {t} steps; long items need F = 1");
                }
                self.long_item(item, t);
            }
        } else {
            out = vec![0f32; src.len()];
            // Item (bi, fi) is rows bi·c..(bi+1)·c, columns fi·t..(fi+1)·t of `[B·C, F·T]`.
            let items = Blocks::new(&mut out, (b * c, f * t), every(b * c, c), every(f * t, t));
            (0..b * f)
                .into_par_iter()
                .for_each_init(Scratch::default, |s, i| {
                    let (bi, fi) = (i / f, i % f);
                    let base = bi * c * f * t + fi * t;
                    let item = sized(&mut s.item, c * t);
                    for ch in 0..c {
                        let at = base + ch * f * t;
                        item[ch * t..(ch + 1) * t].copy_from_slice(&src[at..at + t]);
                    }
                    self.item_in_cache(s, t);
                    for (ch, dst) in items.take(bi, fi).into_rows().enumerate() {
                        dst.copy_from_slice(&s.item[ch * t..(ch + 1) * t]);
                    }
                });
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use roar_testkit::tensor::assert_tensor_close;

    use super::*;

    /// Random parameters for a DConv over `channels`, named as in the reference.
    fn weights(channels: usize, cfg: &HTDemucsConfig) -> HashMap<String, Tensor> {
        let dev = Device::Cpu;
        let hidden = channels / cfg.dconv_comp;
        let mut m = HashMap::new();
        let mut put = |name: String, shape: &[usize], mean: f32| {
            let t = (Tensor::randn(0f32, 0.5, shape, &dev).unwrap() + f64::from(mean)).unwrap();
            m.insert(name, t);
        };
        for d in 0..cfg.dconv_depth {
            let p = format!("layers.{d}");
            put(format!("{p}.0.weight"), &[hidden, channels, 3], 0.0);
            put(format!("{p}.0.bias"), &[hidden], 0.0);
            put(format!("{p}.1.weight"), &[hidden], 1.0);
            put(format!("{p}.1.bias"), &[hidden], 0.0);
            put(format!("{p}.3.weight"), &[2 * channels, hidden, 1], 0.0);
            put(format!("{p}.3.bias"), &[2 * channels], 0.0);
            put(format!("{p}.4.weight"), &[2 * channels], 1.0);
            put(format!("{p}.4.bias"), &[2 * channels], 0.0);
            put(format!("{p}.6.scale"), &[channels], 0.0);
        }
        m
    }

    /// The fused kernel as this CPU runs it, the fused kernel without the AVX-512 tiles
    /// (the row-by-row loops other CPUs run), and candle's ops, all with the same weights.
    fn all(channels: usize) -> ([DConv; 2], DConv) {
        let cfg = HTDemucsConfig::htdemucs();
        let w = weights(channels, &cfg);
        let vb = || VarBuilder::from_tensors(w.clone(), DType::F32, &Device::Cpu);
        let fused = || DConv::load(vb(), channels, &cfg, true).unwrap();
        #[allow(unused_mut)]
        let mut plain = fused();
        #[cfg(target_arch = "x86_64")]
        if let Imp::Cpu(layers) = &mut plain.imp {
            layers.iter_mut().for_each(|l| l.tiles = None);
        }
        let ops = DConv::load(vb(), channels, &cfg, false).unwrap();
        let fused = fused();
        #[cfg(target_arch = "x86_64")]
        let tiles = matches!(&fused.imp, Imp::Cpu(l) if l.iter().all(|l| l.tiles.is_some()));
        #[cfg(not(target_arch = "x86_64"))]
        let tiles = false;
        roar_testkit::kernel_ran("dconv (also checked: the row loops)", tiles);
        ([fused, plain], ops)
    }

    #[test]
    fn fused_frequency_rows_match_candle_ops() {
        let (fused, ops) = all(8);
        // Items (batch, frequency row) read in place from [B, C, F, T]; T short and odd.
        let x = (Tensor::randn(0f32, 1.0, (2, 8, 5, 37), &Device::Cpu).unwrap() + 0.3).unwrap();
        let want = ops.forward_freq(&x).unwrap();
        for (name, f) in ["fused", "row loops"].iter().zip(&fused) {
            assert_tensor_close(name, &f.forward_freq(&x).unwrap(), &want, 1e-4);
        }
    }

    #[test]
    fn fused_long_sequences_match_candle_ops_across_blocks() {
        let (fused, ops) = all(8);
        // One and two items longer than a block, the last block partial: the norms'
        // statistics are merged across blocks and the dilated conv reads across block edges.
        for shape in [(1, 8, 2 * BLOCK + 123), (2, 8, BLOCK + 5)] {
            let x = (Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap() - 0.2).unwrap();
            let want = ops.forward(&x).unwrap();
            for (name, f) in ["fused", "row loops"].iter().zip(&fused) {
                let what = format!("{name} {shape:?}");
                assert_tensor_close(&what, &f.forward(&x).unwrap(), &want, 1e-4);
            }
        }
    }

    #[test]
    fn a_channel_mismatch_is_an_error() {
        let ([fused, _], _) = all(8);
        let x = Tensor::zeros((1, 4, 3, 10), DType::F32, &Device::Cpu).unwrap();
        assert!(fused.forward_freq(&x).is_err());
        let empty = Tensor::zeros((1, 8, 3, 0), DType::F32, &Device::Cpu).unwrap();
        assert!(fused.forward_freq(&empty).is_err());
    }
}
