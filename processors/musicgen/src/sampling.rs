//! Choosing each step's codes from the decoder's logits: classifier-free guidance
//! (`uncond + (cond − uncond) · scale`), then temperature, top-k and top-p in the reference's
//! order (transformers' logits processors), then a draw from a seeded generator, so that a
//! seed reproduces a run. Temperature 0 means greedy (argmax, first index on ties).

use crate::{MusicgenError, Result};

/// Sampling parameters of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 = greedy.
    pub temperature: f32,
    /// Keep the `top_k` most likely codes (ties with the k-th kept too); 0 = no limit.
    pub top_k: usize,
    /// Keep the most likely codes whose probabilities sum to at least `top_p`; 1 = off.
    pub top_p: f32,
    /// Classifier-free guidance scale; 1 = no guidance (one row instead of two).
    pub guidance_scale: f32,
    pub seed: u64,
}

impl Default for Sampling {
    /// The released models' generation config: sampling, top-k 250, guidance 3.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 250,
            top_p: 1.0,
            guidance_scale: 3.0,
            seed: 0,
        }
    }
}

/// Largest temperature and guidance scale accepted (beyond them the output is noise).
pub const MAX_TEMPERATURE: f32 = 10.0;
pub const MAX_GUIDANCE: f32 = 50.0;

impl Sampling {
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&t)) {
            return Err(MusicgenError::params(format!(
                "temperature {t} must be between 0 (greedy) and {MAX_TEMPERATURE}"
            )));
        }
        let p = self.top_p;
        if !(p.is_finite() && p > 0.0 && p <= 1.0) {
            return Err(MusicgenError::params(format!(
                "top_p {p} must be in (0, 1] (1 turns it off)"
            )));
        }
        let g = self.guidance_scale;
        if !(g.is_finite() && (1.0..=MAX_GUIDANCE).contains(&g)) {
            return Err(MusicgenError::params(format!(
                "guidance_scale {g} must be between 1 (no guidance) and {MAX_GUIDANCE}"
            )));
        }
        Ok(())
    }

    pub fn greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Whether the unconditional row is run (guidance above 1).
    pub fn guided(&self) -> bool {
        self.guidance_scale > 1.0
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, and the same sequence everywhere.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

pub struct Sampler {
    params: Sampling,
    rng: Rng,
    guided: Vec<f32>,
    order: Vec<usize>,
}

impl Sampler {
    pub fn new(params: &Sampling) -> Self {
        Self {
            params: params.clone(),
            rng: Rng::new(params.seed),
            guided: Vec::new(),
            order: Vec::new(),
        }
    }

    /// One code per codebook from `logits` (`rows × codebooks × vocab`; with two rows the
    /// first is conditional and the second unconditional, combined by guidance).
    pub fn sample(
        &mut self,
        logits: &[f32],
        rows: usize,
        codebooks: usize,
        vocab: usize,
    ) -> Vec<u32> {
        let width = codebooks * vocab;
        self.guided.clear();
        if rows == 2 {
            let s = self.params.guidance_scale;
            let (c, u) = logits.split_at(width);
            self.guided
                .extend(c.iter().zip(u).map(|(c, u)| u + (c - u) * s));
        } else {
            self.guided.extend_from_slice(&logits[..width]);
        }
        // Taken out of self for the loop, as `pick` needs the generator mutably.
        let guided = std::mem::take(&mut self.guided);
        let out = (0..codebooks)
            .map(|k| self.pick(&guided[k * vocab..(k + 1) * vocab]))
            .collect();
        self.guided = guided;
        out
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.params.greedy() {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature;
        let scaled: Vec<f32> = logits.iter().map(|l| l * inv_t).collect();
        // Candidates, most likely first (index breaks ties, for a fixed order).
        self.order.clear();
        self.order.extend(0..scaled.len());
        let order = &mut self.order;
        order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]).then(a.cmp(&b)));
        let mut keep = order.len();
        let k = self.params.top_k;
        if k > 0 && k < keep {
            // Everything scoring at least the k-th best stays (the reference's `<` test).
            let kth = scaled[order[k - 1]];
            keep = order.iter().take_while(|&&i| scaled[i] >= kth).count();
        }
        let max = f64::from(scaled[order[0]]);
        let weights: Vec<f64> = order[..keep]
            .iter()
            .map(|&i| (f64::from(scaled[i]) - max).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        if self.params.top_p < 1.0 {
            // The reference drops, from the least likely up, tokens whose cumulative
            // probability stays at or below 1 − top_p; the most likely always stays.
            let drop_mass = 1.0 - f64::from(self.params.top_p);
            let mut cum = 0.0;
            let mut kept = keep;
            for w in weights[1..].iter().rev() {
                cum += w / total;
                if cum > drop_mass {
                    break;
                }
                kept -= 1;
            }
            keep = kept;
        }
        let total: f64 = weights[..keep].iter().sum();
        let mut u = self.rng.next_f64() * total;
        for (j, w) in weights[..keep].iter().enumerate() {
            if u < *w {
                return order[j] as u32;
            }
            u -= w;
        }
        order[keep - 1] as u32
    }
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in xs.iter().enumerate() {
        if *v > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32) -> Sampling {
        Sampling {
            temperature,
            top_k,
            top_p,
            guidance_scale: 1.0,
            seed: 7,
        }
    }

    #[test]
    fn guidance_combines_rows_as_the_reference() {
        // cond favours code 1, uncond code 0; scale 3 pushes further towards cond.
        let logits = [0.0, 1.0, 0.5, 0.0];
        let mut s = Sampler::new(&Sampling {
            guidance_scale: 3.0,
            ..params(0.0, 0, 1.0)
        });
        assert_eq!(s.sample(&logits, 2, 1, 2), vec![1]);
        s.sample(&logits, 2, 1, 2);
        // u + (c - u)·3 = [0.5 - 1.5, 0 + 3] = [-1, 3].
        assert_eq!(s.guided, vec![-1.0, 3.0]);
    }

    #[test]
    fn greedy_takes_the_first_maximum_per_codebook() {
        let mut s = Sampler::new(&params(0.0, 250, 1.0));
        let logits = [
            0.1, 0.9, 0.9, 0.0, /* second codebook */ 2.0, 0.0, 0.0, 2.0,
        ];
        assert_eq!(s.sample(&logits, 1, 2, 4), vec![1, 0]);
    }

    #[test]
    fn same_seed_same_codes_other_seed_other_codes() {
        let logits: Vec<f32> = (0..64).map(|i| ((i * 7) % 13) as f32 * 0.1).collect();
        let run = |seed| {
            let mut s = Sampler::new(&Sampling {
                seed,
                ..params(1.0, 0, 1.0)
            });
            (0..50)
                .map(|_| s.sample(&logits, 1, 1, 64)[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits: Vec<f32> = (0..16).map(|i| i as f32 * 0.3).collect();
        let mut s = Sampler::new(&params(1.0, 3, 1.0));
        for _ in 0..500 {
            assert!(s.sample(&logits, 1, 1, 16)[0] >= 13);
        }
        // Probabilities ∝ e^(0.3 i): the best alone holds ~26 %, the best two ~45 %.
        let mut s = Sampler::new(&params(1.0, 0, 0.4));
        let mut seen = [0usize; 16];
        for _ in 0..2000 {
            seen[s.sample(&logits, 1, 1, 16)[0] as usize] += 1;
        }
        assert!(seen[..14].iter().all(|&c| c == 0), "{seen:?}");
        assert!(seen[14] > 0 && seen[15] > seen[14]);
        // top_k = 1 is greedy whatever the temperature.
        let mut s = Sampler::new(&params(5.0, 1, 1.0));
        assert_eq!(s.sample(&logits, 1, 1, 16), vec![15]);
    }

    #[test]
    fn draws_follow_the_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let z: f64 = logits.iter().map(|l| f64::from(*l).exp()).sum();
        let mut s = Sampler::new(&params(1.0, 0, 1.0));
        let n = 30_000;
        let mut seen = [0f64; 3];
        for _ in 0..n {
            seen[s.sample(&logits, 1, 1, 3)[0] as usize] += 1.0;
        }
        for (i, c) in seen.iter().enumerate() {
            let p = f64::from(logits[i]).exp() / z;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (c / n as f64 - p).abs() < 5.0 * sd,
                "code {i}: {c} of {n}, p {p}"
            );
        }
        // A low temperature concentrates on the best code.
        let mut s = Sampler::new(&params(0.05, 0, 1.0));
        assert!((0..200).all(|_| s.sample(&logits, 1, 1, 3)[0] == 2));
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = [
            (params(-1.0, 0, 1.0), "temperature"),
            (params(f32::NAN, 0, 1.0), "temperature"),
            (params(1.0, 0, 0.0), "top_p"),
            (params(1.0, 0, 1.5), "top_p"),
            (
                Sampling {
                    guidance_scale: 0.5,
                    ..params(1.0, 0, 1.0)
                },
                "guidance_scale",
            ),
        ];
        for (p, key) in bad {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        Sampling::default().validate().unwrap();
    }
}
