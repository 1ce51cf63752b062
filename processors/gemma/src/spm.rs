//! Gemma's SentencePiece BPE tokenizer, built from the vocabulary a GGUF file carries
//! (`tokenizer.ggml.tokens`, `.scores`, `.token_type`), so that a GGUF alone is a model.
//!
//! Encoding follows SentencePiece's BPE: control tokens (`<start_of_turn>`...) are cut out of
//! the raw text first; spaces become `▁`; user-defined pieces (runs of newlines or spaces,
//! HTML tags) are taken whole at each position, longest first; the rest starts as single
//! characters and the adjacent pair whose merged piece has the highest score is merged until
//! none is in the vocabulary; a piece still unknown falls back to its UTF-8 bytes (`<0xNN>`).

use std::collections::{BinaryHeap, HashMap};

use candle_core::quantized::gguf_file;

use crate::error::{GemmaError, Result};

/// Token kinds as GGUF numbers them (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl Kind {
    fn from_gguf(t: i32) -> Self {
        match t {
            2 => Kind::Unknown,
            3 => Kind::Control,
            4 => Kind::UserDefined,
            5 => Kind::Unused,
            6 => Kind::Byte,
            _ => Kind::Normal,
        }
    }
}

const SPACE: char = '▁';

/// A SentencePiece BPE vocabulary.
pub struct SpmTokenizer {
    pieces: Vec<String>,
    scores: Vec<f32>,
    kinds: Vec<Kind>,
    ids: HashMap<String, u32>,
    /// Control and user-defined pieces by first character, longest first.
    whole: HashMap<char, Vec<(String, u32, Kind)>>,
    byte_ids: [Option<u32>; 256],
    pub bos: u32,
    pub eos: u32,
    pub unk: u32,
}

impl SpmTokenizer {
    /// The vocabulary in `content`'s metadata (a `llama`-kind, i.e. SentencePiece, tokenizer).
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let md = &content.metadata;
        let get = |k: &str| {
            md.get(k)
                .ok_or_else(|| GemmaError::InvalidModel(format!("GGUF has no {k}")))
        };
        let kind = get("tokenizer.ggml.model")?.to_string().map_err(bad)?;
        if kind != "llama" {
            return Err(GemmaError::InvalidModel(format!(
                "GGUF tokenizer {kind:?} is not SentencePiece (`llama`)"
            )));
        }
        let pieces: Vec<String> = get("tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(bad)?
            .iter()
            .map(|v| v.to_string().cloned().map_err(bad))
            .collect::<Result<_>>()?;
        let scores: Vec<f32> = get("tokenizer.ggml.scores")?
            .to_vec()
            .map_err(bad)?
            .iter()
            .map(|v| v.to_f32().map_err(bad))
            .collect::<Result<_>>()?;
        let kinds: Vec<Kind> = get("tokenizer.ggml.token_type")?
            .to_vec()
            .map_err(bad)?
            .iter()
            .map(|v| v.to_i32().map(Kind::from_gguf).map_err(bad))
            .collect::<Result<_>>()?;
        let id = |k: &str| -> Result<u32> { get(k)?.to_u32().map_err(bad) };
        Self::new(
            pieces,
            scores,
            kinds,
            id("tokenizer.ggml.bos_token_id")?,
            id("tokenizer.ggml.eos_token_id")?,
            id("tokenizer.ggml.unknown_token_id")?,
        )
    }

    /// A vocabulary from its parts (`pieces[i]` has `scores[i]` and `kinds[i]`).
    pub fn new(
        pieces: Vec<String>,
        scores: Vec<f32>,
        kinds: Vec<Kind>,
        bos: u32,
        eos: u32,
        unk: u32,
    ) -> Result<Self> {
        let n = pieces.len();
        if scores.len() != n || kinds.len() != n || n == 0 {
            return Err(GemmaError::InvalidModel(format!(
                "tokenizer has {n} pieces, {} scores, {} types",
                scores.len(),
                kinds.len()
            )));
        }
        if [bos, eos, unk].iter().any(|&i| i as usize >= n) {
            return Err(GemmaError::InvalidModel(
                "special token id outside the vocabulary".into(),
            ));
        }
        // User-defined pieces are stored with plain spaces; text is matched after spaces
        // became `▁`, as SentencePiece does.
        let pieces: Vec<String> = pieces
            .into_iter()
            .zip(&kinds)
            .map(|(p, k)| {
                if *k == Kind::UserDefined {
                    p.replace(' ', "▁")
                } else {
                    p
                }
            })
            .collect();
        let mut ids = HashMap::with_capacity(n);
        let mut whole: HashMap<char, Vec<(String, u32, Kind)>> = HashMap::new();
        let mut byte_ids = [None; 256];
        for (i, (p, k)) in pieces.iter().zip(&kinds).enumerate() {
            let i = i as u32;
            match k {
                Kind::Byte => {
                    if let Some(b) = p
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        byte_ids[b as usize] = Some(i);
                    }
                }
                Kind::Control | Kind::UserDefined => {
                    if let Some(c) = p.chars().next() {
                        whole.entry(c).or_default().push((p.clone(), i, *k));
                    }
                }
                _ => {}
            }
            ids.entry(p.clone()).or_insert(i);
        }
        for v in whole.values_mut() {
            v.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        }
        Ok(Self {
            pieces,
            scores,
            kinds,
            ids,
            whole,
            byte_ids,
            bos,
            eos,
            unk,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The id of a piece written as in the vocabulary (`<end_of_turn>`).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }

    /// Token ids of `text`, `<bos>` first when `bos`.
    pub fn encode(&self, text: &str, bos: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if bos {
            out.push(self.bos);
        }
        // Control tokens are matched in the raw text; everything else after `▁` replaced
        // spaces (user-defined pieces are stored that way, see `new`).
        let normalized = text.replace(' ', "▁");
        let mut plain_start = 0;
        let mut pos = 0;
        while pos < normalized.len() {
            let c = normalized[pos..].chars().next().expect("inside the string");
            if let Some((len, id)) = self.whole_at(&normalized[pos..], c) {
                self.bpe(&normalized[plain_start..pos], &mut out);
                out.push(id);
                pos += len;
                plain_start = pos;
            } else {
                pos += c.len_utf8();
            }
        }
        self.bpe(&normalized[plain_start..], &mut out);
        out
    }

    /// The longest control or user-defined piece at the start of `s`.
    fn whole_at(&self, s: &str, first: char) -> Option<(usize, u32)> {
        self.whole
            .get(&first)?
            .iter()
            .find(|(p, _, k)| {
                // A control piece never contains `▁` (it is matched as raw text).
                s.starts_with(p.as_str()) && (*k == Kind::UserDefined || !p.contains(SPACE))
            })
            .map(|(p, id, _)| (p.len(), *id))
    }

    fn mergeable(&self, piece: &str) -> Option<u32> {
        let id = *self.ids.get(piece)?;
        matches!(self.kinds[id as usize], Kind::Normal).then_some(id)
    }

    /// SentencePiece BPE of a stretch with no whole pieces in it.
    fn bpe(&self, s: &str, out: &mut Vec<u32>) {
        if s.is_empty() {
            return;
        }
        // Symbols as byte ranges of `s`, linked so merges are O(1).
        let bounds: Vec<(usize, usize)> = s
            .char_indices()
            .map(|(i, c)| (i, i + c.len_utf8()))
            .collect();
        let n = bounds.len();
        let start: Vec<usize> = bounds.iter().map(|b| b.0).collect();
        let mut end: Vec<usize> = bounds.iter().map(|b| b.1).collect();
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut next: Vec<Option<usize>> = (0..n).map(|i| (i + 1 < n).then_some(i + 1)).collect();
        let mut alive = vec![true; n];
        // Max-heap on (score, leftmost first); entries go stale when a side was merged.
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<Candidate>, l: usize, r: usize| {
            if let Some(id) = self.mergeable(&s[l..r]) {
                heap.push(Candidate {
                    score: self.scores[id as usize],
                    left_start: l,
                    len: r - l,
                });
            }
        };
        for i in 0..n.saturating_sub(1) {
            push(&mut heap, start[i], end[i + 1]);
        }
        // Symbol index by its start byte, to find a candidate's left symbol.
        let mut at: HashMap<usize, usize> = (0..n).map(|i| (start[i], i)).collect();
        while let Some(c) = heap.pop() {
            let Some(&l) = at.get(&c.left_start) else {
                continue;
            };
            if !alive[l] {
                continue;
            }
            let Some(r) = next[l] else { continue };
            if end[r] - start[l] != c.len {
                continue; // stale: one side changed since this pair was queued
            }
            // Merge r into l.
            end[l] = end[r];
            alive[r] = false;
            at.remove(&start[r]);
            next[l] = next[r];
            if let Some(nr) = next[r] {
                prev[nr] = Some(l);
            }
            if let Some(p) = prev[l] {
                push(&mut heap, start[p], end[l]);
            }
            if let Some(nr) = next[l] {
                push(&mut heap, start[l], end[nr]);
            }
        }
        let mut i = Some(0);
        while let Some(k) = i {
            let piece = &s[start[k]..end[k]];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.push(self.byte_ids[b as usize].unwrap_or(self.unk));
                    }
                }
            }
            i = next[k];
        }
    }

    /// The text of `ids`; control tokens are left out when `skip_control`.
    pub fn decode(&self, ids: &[u32], skip_control: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let Some(piece) = self.pieces.get(id as usize) else {
                continue;
            };
            match self.kinds[id as usize] {
                Kind::Byte => {
                    if let Some(b) = piece
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        bytes.push(b);
                    }
                }
                Kind::Control | Kind::Unknown | Kind::Unused if skip_control => {}
                _ => bytes.extend_from_slice(piece.replace(SPACE, " ").as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn bad(e: candle_core::Error) -> GemmaError {
    GemmaError::InvalidModel(format!("GGUF tokenizer metadata: {e}"))
}

#[derive(Debug, PartialEq)]
struct Candidate {
    score: f32,
    left_start: usize,
    len: usize,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left_start.cmp(&self.left_start))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: specials, bytes, a few merges.
    fn toy() -> SpmTokenizer {
        let mut pieces: Vec<String> = [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "<start_of_turn>",
            "\n",
            "  ",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut kinds = vec![
            Kind::Control,
            Kind::Control,
            Kind::Control,
            Kind::Unknown,
            Kind::Control,
            Kind::UserDefined,
            Kind::UserDefined,
        ];
        let mut scores = vec![0.0; pieces.len()];
        for b in 0..=255u8 {
            pieces.push(format!("<0x{b:02X}>"));
            kinds.push(Kind::Byte);
            scores.push(0.0);
        }
        for (p, s) in [
            ("a", -100.0),
            ("b", -100.0),
            ("▁", -100.0),
            ("ab", -1.0),
            ("▁a", -2.0),
            ("▁ab", -3.0),
            ("bb", -0.5),
        ] {
            pieces.push(p.into());
            kinds.push(Kind::Normal);
            scores.push(s);
        }
        SpmTokenizer::new(pieces, scores, kinds, 2, 1, 3).unwrap()
    }

    fn pieces(t: &SpmTokenizer, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&i| t.pieces[i as usize].clone()).collect()
    }

    #[test]
    fn merges_by_score_and_falls_back_to_bytes() {
        let t = toy();
        // "ab" (-1) beats "▁a" (-2); then "▁"+"ab" = "▁ab" (-3).
        assert_eq!(pieces(&t, &t.encode(" ab", false)), ["▁ab"]);
        // "bb" (-0.5) wins over "ab" (-1): a + bb.
        assert_eq!(pieces(&t, &t.encode("abb", false)), ["a", "bb"]);
        // 'é' is not in the vocabulary: its two UTF-8 bytes.
        assert_eq!(
            pieces(&t, &t.encode("é", true)),
            ["<bos>", "<0xC3>", "<0xA9>"]
        );
    }

    #[test]
    fn whole_pieces_are_cut_first() {
        let t = toy();
        assert_eq!(
            pieces(&t, &t.encode("<start_of_turn>a\nb  a", false)),
            ["<start_of_turn>", "a", "\n", "b", "▁▁", "a"]
        );
    }

    #[test]
    fn decodes_back_to_text() {
        let t = toy();
        for s in ["<start_of_turn>ab ab\n", " é  b", ""] {
            assert_eq!(t.decode(&t.encode(s, false), false), s);
        }
        assert_eq!(t.decode(&t.encode("<start_of_turn>ab", true), true), "ab");
    }

    #[test]
    fn rejects_inconsistent_vocabularies() {
        assert!(SpmTokenizer::new(vec!["a".into()], vec![], vec![Kind::Normal], 0, 0, 0).is_err());
        assert!(
            SpmTokenizer::new(vec!["a".into()], vec![0.0], vec![Kind::Normal], 5, 0, 0).is_err()
        );
    }
}
