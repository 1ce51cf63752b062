//! The T5 tokenizer, read from the model directory's `tokenizer.json` (what the reference's
//! `T5TokenizerFast` loads): the prompt as ids with the closing `</s>` the template adds.

use std::path::Path;

use crate::{MusicgenError, Result};

/// Longest prompt in tokens: T5 was trained on 512-token inputs.
pub const MAX_PROMPT_TOKENS: usize = 512;

pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
}

impl PromptTokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| MusicgenError::invalid(path, format!("tokenizer: {e}")))?;
        Ok(Self { inner })
    }

    /// Token ids of `text`, special tokens included; too long a prompt is an error naming the
    /// limit rather than a silent cut.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| MusicgenError::Tokenizer(e.to_string()))?;
        let ids = enc.get_ids().to_vec();
        if ids.len() > MAX_PROMPT_TOKENS {
            return Err(MusicgenError::params(format!(
                "prompt is {} tokens long; at most {MAX_PROMPT_TOKENS} are allowed",
                ids.len()
            )));
        }
        if ids.is_empty() {
            return Err(MusicgenError::Tokenizer(
                "the tokenizer produced no tokens (no </s> template?)".into(),
            ));
        }
        Ok(ids)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
