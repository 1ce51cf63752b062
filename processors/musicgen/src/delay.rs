//! MusicGen's codebook delay pattern. The decoder predicts all codebooks at every position,
//! codebook `k` lagging `k` positions behind the first, so that a frame's finer codebooks are
//! predicted after its coarser ones. Position 0 and the corners are filled with the pad/BOS
//! token; a prompt's codes sit in their delayed slots and are never overwritten.
//!
//! For `frames` output frames the sequence has `frames + codebooks` positions; codebook `k`
//! holds frame `j` at position `j + k + 1`. With `n` prompt frames, the first position to
//! generate is `n + 1` (the reference's `build_delay_pattern_mask`).

use crate::{MusicgenError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct DelayPattern {
    codebooks: usize,
    frames: usize,
    prompt: usize,
    pad: u32,
    /// `seq[k][t]`, `codebooks × (frames + codebooks)`.
    seq: Vec<Vec<u32>>,
}

impl DelayPattern {
    /// A window of `frames` frames whose first `prompt[k].len()` frames are given.
    pub fn new(codebooks: usize, frames: usize, prompt: &[Vec<u32>], pad: u32) -> Result<Self> {
        let n = prompt.first().map_or(0, Vec::len);
        if !prompt.is_empty() && (prompt.len() != codebooks || prompt.iter().any(|p| p.len() != n))
        {
            return Err(MusicgenError::params(format!(
                "prompt codes must be {codebooks} codebooks of equal length"
            )));
        }
        if frames <= n {
            return Err(MusicgenError::params(format!(
                "a window of {frames} frames leaves nothing to generate after {n} prompt frames"
            )));
        }
        let len = frames + codebooks;
        let mut seq = vec![vec![pad; len]; codebooks];
        for (k, row) in seq.iter_mut().enumerate() {
            for j in 0..n {
                row[j + k + 1] = prompt[k][j];
            }
        }
        Ok(Self {
            codebooks,
            frames,
            prompt: n,
            pad,
            seq,
        })
    }

    /// Positions in the sequence, `frames + codebooks`.
    pub fn len(&self) -> usize {
        self.frames + self.codebooks
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// The first position whose tokens are generated (`prompt + 1`): positions before it are
    /// the prefill.
    pub fn first_generated(&self) -> usize {
        self.prompt + 1
    }

    /// Steps of sampling: positions `first_generated()..len()`.
    pub fn steps(&self) -> usize {
        self.len() - self.first_generated()
    }

    /// Whether codebook `k`'s slot at position `t` is fixed (pad corner or prompt).
    fn fixed(&self, k: usize, t: usize) -> bool {
        t <= k + self.prompt || t > self.frames + k
    }

    /// The tokens of position `t`, one per codebook.
    pub fn column(&self, t: usize) -> Vec<u32> {
        self.seq.iter().map(|row| row[t]).collect()
    }

    /// Stores the sampled tokens of position `t`, except where the pattern fixes the slot.
    pub fn set(&mut self, t: usize, sampled: &[u32]) {
        for (k, &v) in sampled.iter().enumerate().take(self.codebooks) {
            if !self.fixed(k, t) {
                self.seq[k][t] = v;
            }
        }
    }

    /// The frames undelayed, `codebooks × frames` (prompt frames included).
    pub fn codes(&self) -> Vec<Vec<u32>> {
        (0..self.codebooks)
            .map(|k| self.seq[k][k + 1..k + 1 + self.frames].to_vec())
            .collect()
    }

    pub fn pad(&self) -> u32 {
        self.pad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's docstring example: 4 codebooks, 8 positions (4 frames), no prompt:
    /// `P -1 -1 -1 -1 P P P` / `P P -1 -1 -1 -1 P P` / ... (-1 = generated).
    #[test]
    fn layout_matches_the_reference_mask() {
        let mut p = DelayPattern::new(4, 4, &[], 9).unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(p.first_generated(), 1);
        for t in p.first_generated()..p.len() {
            p.set(
                t,
                &[
                    100 + t as u32,
                    200 + t as u32,
                    300 + t as u32,
                    400 + t as u32,
                ],
            );
        }
        let rows: Vec<Vec<u32>> = (0..4).map(|k| p.seq[k].clone()).collect();
        assert_eq!(rows[0], vec![9, 101, 102, 103, 104, 9, 9, 9]);
        assert_eq!(rows[1], vec![9, 9, 202, 203, 204, 205, 9, 9]);
        assert_eq!(rows[3], vec![9, 9, 9, 9, 404, 405, 406, 407]);
        // Undelayed, frame j of codebook k is what was sampled at position j + k + 1.
        assert_eq!(p.codes()[0], vec![101, 102, 103, 104]);
        assert_eq!(p.codes()[3], vec![404, 405, 406, 407]);
    }

    #[test]
    fn prompt_codes_are_kept_and_generation_starts_after_them() {
        let prompt = vec![vec![1, 2], vec![3, 4], vec![5, 6], vec![7, 8]];
        let mut p = DelayPattern::new(4, 5, &prompt, 9).unwrap();
        assert_eq!(p.first_generated(), 3);
        assert_eq!(p.steps(), 6);
        // Position 3: codebook 0 is new; the others still read prompt or BOS.
        assert_eq!(p.column(3), vec![9, 4, 5, 9]);
        p.set(3, &[50, 51, 52, 53]);
        assert_eq!(p.column(3), vec![50, 4, 5, 9]);
        for t in 4..p.len() {
            p.set(t, &[60, 61, 62, 63]);
        }
        let codes = p.codes();
        assert_eq!(codes[0], vec![1, 2, 50, 60, 60]);
        assert_eq!(codes[2], vec![5, 6, 62, 62, 62]);
    }

    #[test]
    fn bad_prompts_are_errors() {
        assert!(
            DelayPattern::new(4, 2, &[vec![1, 2], vec![1, 2], vec![1, 2], vec![1, 2]], 9).is_err()
        );
        assert!(DelayPattern::new(4, 5, &[vec![1]], 9).is_err());
        assert!(DelayPattern::new(2, 5, &[vec![1, 2], vec![3]], 9).is_err());
    }
}
