//! Splitting one voiced run's pitch curve into note-sized pieces (steps 3-6
//! of the segmentation described in `notes.rs`).

use super::stats::median;

/// How the pieces are cut, in frames and semitones.
pub(crate) struct Cut {
    /// Odd length of the running median that removes glitches.
    pub blip: usize,
    /// Length of the running mean that cancels vibrato.
    pub window: usize,
    /// Split distance.
    pub thr: f32,
    /// Absorb distance for pieces shorter than `window`.
    pub merge: f32,
    /// Pieces shorter than this are always absorbed into a neighbour.
    pub min_len: usize,
}

/// Half-open ranges of `p` (fractional MIDI of one run) that become notes.
pub(crate) fn pieces(p: &[f32], cut: &Cut) -> Vec<(usize, usize)> {
    let clean = running_median(p, cut.blip);
    let smooth = running_mean(&clean, cut.window);
    let mut ranges = split_points(&smooth, cut.window, cut.thr);
    // Refining first lets a piece straddling a step shrink to its true
    // (often tiny) size before deciding whether it is a note of its own.
    refine_boundaries(&clean, &mut ranges, cut.window);
    absorb_short(&clean, &mut ranges, cut);
    let mut ranges: Vec<_> = ranges
        .into_iter()
        .flat_map(|r| resplit(&clean, r, cut))
        .collect();
    merge_same_note(&clean, &mut ranges);
    refine_boundaries(&clean, &mut ranges, cut.window);
    ranges
}

/// The running mean turns a fast run of small steps (a chromatic run of
/// 0.1 s notes) into a ramp that splits in the wrong places. A piece is
/// therefore split again at its best two-level, else three-level, fit (least
/// squares) when every part lasts longer than half of `blip` frames and
/// neighbouring parts' medians differ by more than `merge` and by more than
/// twice either part's mean absolute deviation: a staircase is flat on each
/// side, while a vibrato cut in pieces is not.
fn resplit(p: &[f32], r: (usize, usize), cut: &Cut) -> Vec<(usize, usize)> {
    // The glitch median keeps plateaus longer than half its length.
    let min_side = cut.blip / 2 + 1;
    let x = &p[r.0..r.1];
    let n = x.len();
    if n < 2 * min_side {
        return vec![r];
    }
    let mut prefix = vec![(0.0f64, 0.0f64); n + 1];
    for (i, &v) in x.iter().enumerate() {
        let v = v as f64;
        prefix[i + 1] = (prefix[i].0 + v, prefix[i].1 + v * v);
    }
    let sse = |a: usize, b: usize| {
        let len = (b - a) as f64;
        let (s, q) = (prefix[b].0 - prefix[a].0, prefix[b].1 - prefix[a].1);
        q - s * s / len
    };
    let distinct = |cuts: &[usize]| {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(n);
        let parts: Vec<(f32, f32)> = bounds
            .windows(2)
            .map(|w| {
                let s = &x[w[0]..w[1]];
                let m = median(s.iter().copied()).unwrap_or(0.0);
                (
                    m,
                    s.iter().map(|v| (v - m).abs()).sum::<f32>() / s.len() as f32,
                )
            })
            .collect();
        parts.windows(2).all(|w| {
            let step = (w[0].0 - w[1].0).abs();
            step > cut.merge && step > 2.0 * w[0].1.max(w[1].1)
        })
    };
    let two = (min_side..=n - min_side)
        .min_by(|&a, &b| (sse(0, a) + sse(a, n)).total_cmp(&(sse(0, b) + sse(b, n))));
    let cuts = match two {
        Some(k) if distinct(&[k]) => vec![k],
        // Quadratic search: only for pieces up to a couple of seconds.
        _ if n >= 3 * min_side && n <= 8 * cut.window.max(min_side) => {
            let mut best: Option<(f64, usize, usize)> = None;
            for a in min_side..=n - 2 * min_side {
                for b in a + min_side..=n - min_side {
                    let cost = sse(0, a) + sse(a, b) + sse(b, n);
                    if best.is_none_or(|x| cost < x.0) {
                        best = Some((cost, a, b));
                    }
                }
            }
            match best {
                Some((_, a, b)) if distinct(&[a, b]) => vec![a, b],
                _ => return vec![r],
            }
        }
        _ => return vec![r],
    };
    let mut bounds = vec![r.0];
    bounds.extend(cuts.iter().map(|c| r.0 + c));
    bounds.push(r.1);
    bounds
        .windows(2)
        .flat_map(|w| resplit(p, (w[0], w[1]), cut))
        .collect()
}

/// Centred running median of odd length `window`, shrinking at the edges.
fn running_median(p: &[f32], window: usize) -> Vec<f32> {
    let half = window / 2;
    (0..p.len())
        .map(|j| {
            let lo = j.saturating_sub(half);
            let hi = (j + half + 1).min(p.len());
            median(p[lo..hi].iter().copied()).unwrap_or(p[j])
        })
        .collect()
}

/// Running mean over `window` frames, centred where it fits; near the ends
/// the window keeps its length and slides inward, so that vibrato stays
/// canceled at a run's edges too.
fn running_mean(p: &[f32], window: usize) -> Vec<f32> {
    let mut prefix = vec![0.0f64; p.len() + 1];
    for (i, &x) in p.iter().enumerate() {
        prefix[i + 1] = prefix[i] + x as f64;
    }
    let w = window.clamp(1, p.len().max(1));
    (0..p.len())
        .map(|j| {
            let lo = j.saturating_sub(w / 2).min(p.len() - w);
            ((prefix[lo + w] - prefix[lo]) / w as f64) as f32
        })
        .collect()
}

/// Splits where the smoothed pitch leaves the median of the current piece's
/// last `window` frames by more than `thr` semitones.
fn split_points(smooth: &[f32], window: usize, thr: f32) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for j in 1..smooth.len() {
        let lo = start.max(j.saturating_sub(window));
        let centre = median(smooth[lo..j].iter().copied()).unwrap_or(smooth[j]);
        if (smooth[j] - centre).abs() > thr {
            out.push((start, j));
            start = j;
        }
    }
    if start < smooth.len() {
        out.push((start, smooth.len()));
    }
    out
}

fn range_median(p: &[f32], r: (usize, usize)) -> f32 {
    median(p[r.0..r.1].iter().copied()).unwrap_or(0.0)
}

/// Pieces shorter than the smoothing window are where it cannot vouch for a
/// level (vibrato and drift near a run's edges, where the window shrinks;
/// the middle of a portamento). Such a piece is folded into the closer
/// touching neighbour when it lies within `merge` semitones of it, or when it
/// is too short to be a note at all; shortest piece first. A real short note
/// a semitone or more away survives.
fn absorb_short(p: &[f32], ranges: &mut Vec<(usize, usize)>, cut: &Cut) {
    let mut meds: Vec<f32> = ranges.iter().map(|&r| range_median(p, r)).collect();
    while ranges.len() > 1 {
        let mut best: Option<(usize, usize, usize)> = None; // (len, piece, neighbour)
        for i in 0..ranges.len() {
            let len = ranges[i].1 - ranges[i].0;
            if len >= cut.window || best.is_some_and(|b| len >= b.0) {
                continue;
            }
            let near = [i.checked_sub(1), (i + 1 < ranges.len()).then_some(i + 1)]
                .into_iter()
                .flatten()
                .map(|j| (j, (meds[j] - meds[i]).abs()))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .filter(|&(_, d)| d <= cut.merge || len < cut.min_len);
            if let Some((j, _)) = near {
                best = Some((len, i, j));
            }
        }
        let Some((_, i, j)) = best else { return };
        let (lo, hi) = (i.min(j), i.max(j));
        ranges[lo] = (ranges[lo].0, ranges[hi].1);
        ranges.remove(hi);
        meds.remove(hi);
        meds[lo] = range_median(p, ranges[lo]);
    }
}

/// Joins neighbouring pieces that round to the same MIDI note (one note split
/// by slow drift).
fn merge_same_note(p: &[f32], ranges: &mut Vec<(usize, usize)>) {
    let mut i = 1;
    while i < ranges.len() {
        if range_median(p, ranges[i - 1]).round() == range_median(p, ranges[i]).round() {
            ranges[i - 1].1 = ranges[i].1;
            ranges.remove(i);
        } else {
            i += 1;
        }
    }
}

/// The running mean blurs a step over its window, so each boundary is moved
/// to the frame, within a window either side, that best separates the two
/// pieces' levels (least absolute deviation from each piece's median).
fn refine_boundaries(p: &[f32], ranges: &mut [(usize, usize)], window: usize) {
    for i in 1..ranges.len() {
        let (a, b) = (ranges[i - 1], ranges[i]);
        let (ma, mb) = (range_median(p, a), range_median(p, b));
        let lo = a.0.max(b.0.saturating_sub(window));
        let hi = b.1.min(b.0 + window);
        let cost = |k: usize| -> f32 {
            p[lo..k].iter().map(|x| (x - ma).abs()).sum::<f32>()
                + p[k..hi].iter().map(|x| (x - mb).abs()).sum::<f32>()
        };
        // Keep both pieces non-empty.
        let best = (lo.max(a.0 + 1)..=hi.min(b.1 - 1)).min_by(|&x, &y| {
            cost(x)
                .total_cmp(&cost(y))
                .then(x.abs_diff(b.0).cmp(&y.abs_diff(b.0)))
        });
        if let Some(k) = best {
            ranges[i - 1].1 = k;
            ranges[i].0 = k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut() -> Cut {
        Cut {
            blip: 9,
            window: 21,
            thr: 0.5,
            merge: 0.75,
            min_len: 6,
        }
    }

    #[test]
    fn running_filters_keep_levels() {
        let mut p = vec![60.0; 10];
        p.extend([64.0; 10]);
        p[3] = 72.0;
        let s = running_median(&p, 5);
        assert_eq!(s[3], 60.0);
        assert_eq!(&s[9..11], &[60.0, 64.0]);
        let m = running_mean(&[1.0, 2.0, 3.0, 4.0], 3);
        assert_eq!(m, vec![2.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn steps_are_placed_exactly() {
        let mut p = vec![60.0; 40];
        p.extend([64.0; 40]);
        p.extend([65.0; 40]);
        assert_eq!(pieces(&p, &cut()), vec![(0, 40), (40, 80), (80, 120)]);
    }

    #[test]
    fn a_piece_straddling_a_step_does_not_survive() {
        // The running mean puts a 10-frame piece across the 67 -> 65 step.
        let seq = [60.1f32, 64.1, 67.1, 65.1, 66.1];
        let p: Vec<f32> = (0..250).map(|i| seq[i / 50]).collect();
        let want: Vec<_> = (0..5).map(|i| (50 * i, 50 * i + 50)).collect();
        assert_eq!(pieces(&p, &cut()), want);
    }

    #[test]
    fn short_edge_piece_is_absorbed_but_a_semitone_is_not() {
        // 40 frames at 69, then 14 frames 60 cents flat (a vibrato tail).
        let mut p = vec![69.0; 40];
        p.extend([68.4; 14]);
        assert_eq!(pieces(&p, &cut()), vec![(0, 54)]);
        // 14 frames a full semitone below: kept as its own piece.
        let mut p = vec![69.0; 40];
        p.extend([68.0; 14]);
        assert_eq!(pieces(&p, &cut()), vec![(0, 40), (40, 54)]);
    }
}
