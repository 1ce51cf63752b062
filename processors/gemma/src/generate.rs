//! Greedy decoding over any of the crate's causal language models.

use candle_core::Tensor;

use crate::error::{GemmaError, Result};
use crate::layers::KvCache;

/// A decoder that continues token ids after a cache.
pub trait CausalLm {
    fn new_cache(&self) -> KvCache;
    /// Logits `[last, vocab]` of the last `last` positions of `ids`.
    fn forward(&self, ids: &[u32], cache: &mut KvCache, last: usize) -> Result<Tensor>;
}

impl CausalLm for crate::gemma3::Gemma3 {
    fn new_cache(&self) -> KvCache {
        crate::gemma3::Gemma3::new_cache(self)
    }
    fn forward(&self, ids: &[u32], cache: &mut KvCache, last: usize) -> Result<Tensor> {
        crate::gemma3::Gemma3::forward(self, ids, cache, last)
    }
}

/// Greedy continuation of `prompt`: at most `max_new` tokens, ending early after a token in
/// `stop` (which is returned) or when `on_token` (given each new token) returns false.
pub fn greedy(
    model: &dyn CausalLm,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(GemmaError::InvalidInput("empty prompt".into()));
    }
    let mut cache = model.new_cache();
    let mut out = Vec::with_capacity(max_new);
    let mut logits = model.forward(prompt, &mut cache, 1)?;
    for _ in 0..max_new {
        let next = argmax(&logits)?;
        out.push(next);
        if stop.contains(&next) || !on_token(next) {
            break;
        }
        logits = model.forward(&[next], &mut cache, 1)?;
    }
    Ok(out)
}

/// Index of the largest logit of the last row (the first one on ties, as torch's argmax).
pub fn argmax(logits: &Tensor) -> Result<u32> {
    let row: Vec<f32> = logits.get(logits.dim(0)? - 1)?.to_vec1()?;
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            return Err(GemmaError::InvalidModel(
                "the model produced NaN logits".into(),
            ));
        }
        if v > best.1 {
            best = (i, v);
        }
    }
    Ok(best.0 as u32)
}
