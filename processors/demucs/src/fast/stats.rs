//! Running statistics (count, mean, squared deviations) that merge exactly, for norms whose
//! statistics are summed over blocks or parallel tasks.

use rayon::prelude::*;

use super::slices::moments;

/// Running statistics of a sample: count, mean, sum of squared deviations (float64), so that
/// blocks' statistics merge exactly.
#[derive(Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) n: f64,
    pub(crate) mean: f64,
    pub(crate) m2: f64,
}

/// Values per block of [`Stats::of_blocks`].
const STATS_BLOCK: usize = 4096;

impl Stats {
    /// Of one block (two passes, float32 lanes summed in float64: keep blocks to thousands of
    /// values, and merge).
    pub(crate) fn of(s: &[f32]) -> Self {
        let (mean, var) = moments(s);
        let n = s.len() as f64;
        Self {
            n,
            mean,
            m2: var * n,
        }
    }

    /// Chan et al.'s pairwise merge.
    pub(crate) fn merge(self, o: Self) -> Self {
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        Self {
            n,
            mean: self.mean + delta * o.n / n,
            m2: self.m2 + o.m2 + delta * delta * self.n * o.n / n,
        }
    }

    /// Of a long sample, in parallel blocks merged in float64.
    pub(crate) fn of_blocks(s: &[f32]) -> Self {
        s.par_chunks(STATS_BLOCK)
            .map(Self::of)
            .reduce(Self::default, Self::merge)
    }

    /// Biased variance.
    pub(crate) fn var(self) -> f64 {
        if self.n == 0.0 {
            0.0
        } else {
            self.m2 / self.n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_statistics_merge_to_the_whole() {
        // Offset far from zero, where float32 sums of a million values would drift.
        let v: Vec<f32> = (0..1_000_003)
            .map(|i| 1000.0 + (i % 97) as f32 * 0.01)
            .collect();
        let st = Stats::of_blocks(&v);
        let n = v.len() as f64;
        let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|x| (f64::from(*x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            (st.mean - mean).abs() < 1e-7 * mean,
            "{} vs {mean}",
            st.mean
        );
        assert!((st.var() - var).abs() < 1e-6 * var, "{} vs {var}", st.var());
        assert_eq!(Stats::of_blocks(&[]).var(), 0.0);
    }
}
