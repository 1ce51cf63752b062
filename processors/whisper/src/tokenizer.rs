//! Whisper's byte-level BPE tokenizer (from the model's `tokenizer.json`) and the ids of
//! its special tokens, looked up by name so English-only and multilingual vocabularies
//! (which are shifted by one) both work.

use std::path::Path;

use crate::error::{Result, WhisperError};

/// Special token ids of one vocabulary.
#[derive(Debug, Clone)]
pub struct Specials {
    pub eot: u32,
    pub sot: u32,
    pub translate: u32,
    pub transcribe: u32,
    pub sot_prev: u32,
    pub sot_lm: Option<u32>,
    pub no_speech: u32,
    pub no_timestamps: u32,
    /// `<|0.00|>`; every id from here on is a timestamp in 20 ms steps.
    pub timestamp_begin: u32,
    /// `(id, code)` of each language token, e.g. `(50259, "en")`.
    pub languages: Vec<(u32, String)>,
}

/// Tokenizer plus special ids.
pub struct WhisperTokenizer {
    inner: tokenizers::Tokenizer,
    pub specials: Specials,
}

impl WhisperTokenizer {
    /// Reads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| WhisperError::invalid(path, e.to_string()))?;
        let id = |s: &str| {
            inner
                .token_to_id(s)
                .ok_or_else(|| WhisperError::invalid(path, format!("no {s} token")))
        };
        let sot = id("<|startoftranscript|>")?;
        let translate = id("<|translate|>")?;
        let no_timestamps = id("<|notimestamps|>")?;
        // Language tokens sit between start-of-transcript and translate.
        let languages = (sot + 1..translate)
            .filter_map(|i| {
                let t = inner.id_to_token(i)?;
                let code = t.strip_prefix("<|")?.strip_suffix("|>")?.to_string();
                Some((i, code))
            })
            .collect();
        let specials = Specials {
            eot: id("<|endoftext|>")?,
            sot,
            translate,
            transcribe: id("<|transcribe|>")?,
            sot_prev: id("<|startofprev|>")?,
            sot_lm: inner.token_to_id("<|startoflm|>"),
            no_speech: id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?,
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
            languages,
        };
        Ok(Self { inner, specials })
    }

    /// Text tokens of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| WhisperError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `tokens`, skipping anything that is not a text token.
    pub fn decode(&self, tokens: &[u32]) -> Result<String> {
        let text: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| t < self.specials.eot)
            .collect();
        self.inner
            .decode(&text, false)
            .map_err(|e| WhisperError::Tokenizer(e.to_string()))
    }

    /// The language token of `code` (`en`, `de`...).
    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.specials
            .languages
            .iter()
            .find(|(_, c)| c == code)
            .map(|(i, _)| *i)
    }

    /// Splits text tokens into words: a word starts at a token that begins with a space or
    /// is punctuation; tokens that only form a character together stay together. Languages
    /// written without spaces (`zh`, `ja`, `th`, `lo`, `my`, `yue`) split at every character.
    pub fn split_words(&self, tokens: &[u32], language: &str) -> Result<Vec<(String, Vec<u32>)>> {
        // First group tokens into valid UTF-8 pieces.
        let mut pieces: Vec<(String, Vec<u32>)> = Vec::new();
        let mut cur = Vec::new();
        for &t in tokens {
            cur.push(t);
            let s = self.decode(&cur)?;
            if !s.contains('\u{fffd}') {
                pieces.push((s, std::mem::take(&mut cur)));
            }
        }
        if !cur.is_empty() {
            pieces.push((self.decode(&cur)?, cur));
        }
        if matches!(language, "zh" | "ja" | "th" | "lo" | "my" | "yue") {
            return Ok(pieces);
        }
        let mut words: Vec<(String, Vec<u32>)> = Vec::new();
        for (s, toks) in pieces {
            let starts_word = s.starts_with(' ');
            // The reference asks whether the piece occurs in Python's `string.punctuation`
            // (so `.`, `),` and a lone space count; `...` does not): the same here.
            let punct = ASCII_PUNCTUATION.contains(s.trim());
            match words.last_mut() {
                Some(last) if !starts_word && !punct => {
                    last.0.push_str(&s);
                    last.1.extend(toks);
                }
                _ => words.push((s, toks)),
            }
        }
        Ok(words)
    }
}

/// Python's `string.punctuation`.
const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
