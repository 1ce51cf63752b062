//! Decoding one 30 s window: prompt, logit rules (suppressed tokens, timestamp grammar),
//! greedy / sampled / beam-search token selection.

use candle_core::{IndexOp, Tensor};

use crate::error::Result;
use crate::model::Model;
use crate::tokenizer::Specials;
use crate::weights::ModelHints;

/// How one window is decoded.
pub(crate) struct WindowParams<'a> {
    /// Sampling temperature; 0 picks the most likely token.
    pub temperature: f32,
    /// Beam width (only used at temperature 0).
    pub beam_size: Option<usize>,
    /// Beam-search patience: finish after `beam_size * patience` complete hypotheses.
    pub patience: f32,
    pub timestamps: bool,
    /// Previous text, sent after `<|startofprev|>`.
    pub prompt: &'a [u32],
    /// `<|startoftranscript|>` [language, task].
    pub sot_seq: &'a [u32],
    /// Latest allowed first timestamp, in seconds.
    pub max_initial_timestamp: f32,
    pub seed: u64,
}

/// What decoding one window gave.
#[derive(Debug, Clone)]
pub(crate) struct WindowResult {
    /// Sampled tokens (text and timestamps), without the end-of-text token.
    pub tokens: Vec<u32>,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    pub temperature: f32,
}

struct Rules<'a> {
    sp: &'a Specials,
    hints: &'a ModelHints,
    timestamps: bool,
    max_initial: u32,
}

impl Rules<'_> {
    /// Masks what may not come next after `seq` (the sampled tokens so far) and returns the
    /// log-sum-exp of the masked logits, so that `logits[t] - lse` is exactly what
    /// `log_softmax(logits)[t]` gives, without a second pass over the vocabulary.
    fn apply(&self, logits: &mut [f32], seq: &[u32]) -> f32 {
        let sp = self.sp;
        let mut ban = |t: u32| {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = f32::NEG_INFINITY;
            }
        };
        for &t in &self.hints.suppress {
            ban(t);
        }
        for t in [
            sp.transcribe,
            sp.translate,
            sp.sot,
            sp.sot_prev,
            sp.no_speech,
        ] {
            ban(t);
        }
        if let Some(t) = sp.sot_lm {
            ban(t);
        }
        if seq.is_empty() {
            for &t in &self.hints.suppress_begin {
                ban(t);
            }
            ban(sp.eot);
        }
        let tb = sp.timestamp_begin as usize;
        let n = logits.len();
        if !self.timestamps {
            logits[tb.min(n)..].fill(f32::NEG_INFINITY);
            return logsumexp(logits);
        }
        logits[sp.no_timestamps as usize] = f32::NEG_INFINITY;
        let is_ts = |t: u32| t >= sp.timestamp_begin;
        let last_ts = seq.last().is_some_and(|&t| is_ts(t));
        let penult_ts = seq.len() < 2 || is_ts(seq[seq.len() - 2]);
        if last_ts {
            if penult_ts {
                // A segment just closed: text must follow.
                logits[tb..].fill(f32::NEG_INFINITY);
            } else {
                // Text was open: only a closing timestamp or the end may follow.
                logits[..sp.eot as usize].fill(f32::NEG_INFINITY);
            }
        }
        if let Some(&last) = seq.iter().rev().find(|&&t| is_ts(t)) {
            // Timestamps never go back, and a segment is never empty.
            let floor = if last_ts && !penult_ts {
                last
            } else {
                last + 1
            };
            logits[tb..(floor as usize).min(n)].fill(f32::NEG_INFINITY);
        }
        if seq.is_empty() {
            logits[..tb].fill(f32::NEG_INFINITY);
            let last_allowed = tb + self.max_initial as usize;
            if last_allowed + 1 < n {
                logits[last_allowed + 1..].fill(f32::NEG_INFINITY);
            }
        }
        // If the timestamps together outweigh every single text token, take a timestamp.
        // (The log-probabilities are formed on the fly, value for value as `log_softmax`.)
        let lse = logsumexp(logits);
        let ts_mass = logsumexp_of(logits[tb..].iter().map(|v| v - lse));
        let best_text = logits[..tb]
            .iter()
            .map(|v| v - lse)
            .fold(f32::NEG_INFINITY, f32::max);
        if ts_mass > best_text {
            logits[..tb].fill(f32::NEG_INFINITY);
            // Only timestamps are left: the same sum as over the whole row, whose masked
            // entries add exact zeros.
            return logsumexp(&logits[tb..]);
        }
        lse
    }
}

pub(crate) fn log_softmax(x: &[f32]) -> Vec<f32> {
    let lse = logsumexp(x);
    x.iter().map(|v| v - lse).collect()
}

fn logsumexp(x: &[f32]) -> f32 {
    logsumexp_of(x.iter().copied())
}

fn logsumexp_of(x: impl Iterator<Item = f32> + Clone) -> f32 {
    let m = x.clone().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    m + x.map(|v| (v - m).exp()).sum::<f32>().ln()
}

/// xorshift64*: a small deterministic generator for temperature sampling.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// Decodes one window of encoded audio (`[1, frames, d]`).
pub(crate) fn decode_window(
    model: &Model,
    audio: &Tensor,
    sp: &Specials,
    hints: &ModelHints,
    p: &WindowParams,
) -> Result<WindowResult> {
    let dev = audio.device();
    let ctx = model.dims.n_text_ctx;
    let mut init: Vec<u32> = Vec::new();
    if !p.prompt.is_empty() {
        init.push(sp.sot_prev);
        let keep = p.prompt.len().min(ctx / 2 - 1);
        init.extend_from_slice(&p.prompt[p.prompt.len() - keep..]);
    }
    let sot_index = init.len();
    init.extend_from_slice(p.sot_seq);
    if !p.timestamps {
        init.push(sp.no_timestamps);
    }
    let sample_len = (ctx / 2).min(ctx - init.len());
    let rules = Rules {
        sp,
        hints,
        timestamps: p.timestamps,
        max_initial: (p.max_initial_timestamp / 0.02).round() as u32,
    };
    let mut state = model.decoder.start(audio)?;
    let t = Tensor::new(init.as_slice(), dev)?.unsqueeze(0)?;
    let (logits, _) = model.decoder.forward(&t, &mut state, &[])?;
    let at_sot: Vec<f32> = logits.i((0, sot_index))?.to_vec1()?;
    let no_speech_prob = log_softmax(&at_sot)[sp.no_speech as usize].exp();
    let first: Vec<f32> = logits.i((0, init.len() - 1))?.to_vec1()?;

    let beam = match p.beam_size {
        Some(b) if b > 1 && p.temperature == 0.0 => b,
        _ => 1,
    };
    let (tokens, sum_lp) = if beam == 1 {
        let mut rng = Rng(p.seed | 1);
        let mut seq = Vec::new();
        let mut sum = 0f32;
        let mut next = first;
        while seq.len() < sample_len {
            let lse = rules.apply(&mut next, &seq);
            let tok = if p.temperature == 0.0 {
                argmax(&next)
            } else {
                let probs: Vec<f32> = next
                    .iter()
                    .map(|l| ((l - lse) / p.temperature).exp())
                    .collect();
                let total: f32 = probs.iter().sum();
                let mut r = rng.next_f32() * total;
                probs
                    .iter()
                    .position(|&q| {
                        r -= q;
                        r <= 0.0
                    })
                    .unwrap_or_else(|| argmax(&next))
            } as u32;
            sum += next[tok as usize] - lse;
            if tok == sp.eot {
                break;
            }
            seq.push(tok);
            let t = Tensor::new(&[[tok]], dev)?;
            let (l, _) = model.decoder.forward(&t, &mut state, &[])?;
            next = l.i((0, 0))?.to_vec1()?;
        }
        (seq, sum)
    } else {
        beam_search(
            model, &mut state, first, &rules, beam, p.patience, sample_len,
        )?
    };
    let avg_logprob = sum_lp / (tokens.len() + 1) as f32;
    Ok(WindowResult {
        tokens,
        avg_logprob,
        no_speech_prob,
        temperature: p.temperature,
    })
}

/// Beam search as CTranslate2 runs it for faster-whisper: each step ranks every
/// hypothesis's continuations together by total log-probability; among the best `beam`
/// candidates, those that end the text are finished, and the best `beam` that do not end it
/// go on. An end ranked below the best `beam` is not a finished hypothesis: taking those
/// too fills the finished list with unlikely early endings and stops the search before the
/// good hypotheses end (the long-form defect this replaced). The search stops once
/// `beam * patience` hypotheses have finished or at `sample_len` tokens (where the live
/// ones count as finished), and the finished one with the best mean log-probability wins.
fn beam_search(
    model: &Model,
    state: &mut crate::model::DecoderState,
    first: Vec<f32>,
    rules: &Rules,
    beam: usize,
    patience: f32,
    sample_len: usize,
) -> Result<(Vec<u32>, f32)> {
    let dev = state_device(model);
    let eot = rules.sp.eot;
    let max_finished = ((beam as f32 * patience).round() as usize).max(1);
    let mut beams: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0)];
    let mut logits = vec![first];
    let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
    // Reused every step: a hypothesis's log-probabilities and the token order to rank them.
    let mut lp: Vec<f32> = Vec::new();
    let mut idx: Vec<usize> = Vec::new();
    for step in 0..sample_len {
        let last_step = step + 1 == sample_len;
        // Each hypothesis offers its best beam + 1 tokens: enough for the best `beam`
        // candidates overall and, after at most one end of text each, `beam` to go on.
        let mut cands: Vec<(f32, usize, u32)> = Vec::new();
        for (i, (seq, score)) in beams.iter().enumerate() {
            let l = &mut logits[i];
            let lse = rules.apply(l, seq);
            lp.clear();
            lp.extend(l.iter().map(|v| v - lse));
            idx.clear();
            idx.extend(0..lp.len());
            let k = (beam + 1).min(idx.len());
            idx.select_nth_unstable_by(k - 1, |&a, &b| lp[b].total_cmp(&lp[a]));
            for &t in &idx[..k] {
                if lp[t].is_finite() {
                    cands.push((score + lp[t], i, t as u32));
                }
            }
        }
        // Equal scores in hypothesis then token order, as a top-k over [beam, vocab] gives.
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut next: Vec<(Vec<u32>, f32)> = Vec::new();
        let mut rows: Vec<u32> = Vec::new();
        for (rank, &(score, i, tok)) in cands.iter().enumerate() {
            if rank < beam && (tok == eot || last_step) {
                let mut seq = beams[i].0.clone();
                if tok != eot {
                    seq.push(tok);
                }
                finished.push((seq, score));
            } else if tok != eot && next.len() < beam {
                let mut seq = beams[i].0.clone();
                seq.push(tok);
                next.push((seq, score));
                rows.push(i as u32);
            }
        }
        if last_step || finished.len() >= max_finished || next.is_empty() {
            break;
        }
        state.reorder(&rows)?;
        let last: Vec<u32> = next
            .iter()
            .map(|(s, _)| *s.last().expect("non-empty"))
            .collect();
        let t = Tensor::new(last.as_slice(), &dev)?.unsqueeze(1)?;
        let (l, _) = model.decoder.forward(&t, state, &[])?;
        logits = (0..next.len())
            .map(|r| l.i((r, 0))?.to_vec1())
            .collect::<candle_core::Result<_>>()?;
        beams = next;
    }
    if finished.is_empty() {
        finished = beams;
    }
    // Rank by mean log-probability (length penalty 1) so long hypotheses are not penalised
    // for their length; the first of equals wins, as in a stable sort.
    let mean = |h: &(Vec<u32>, f32)| h.1 / h.0.len().max(1) as f32;
    let best = finished
        .into_iter()
        .reduce(|best, h| if mean(&h) > mean(&best) { h } else { best })
        .expect("at least one hypothesis");
    Ok(best)
}

fn state_device(model: &Model) -> candle_core::Device {
    model.decoder.device()
}
