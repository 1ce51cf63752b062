//! Reading the Hugging Face layout of a MusicGen model directory:
//!
//! ```text
//! config.json                     MusicgenConfig / MusicgenMelodyConfig
//! model.safetensors               or model.safetensors.index.json + its shards
//! tokenizer.json                  the T5 tokenizer
//! preprocessor_config.json        melody only, optional (chroma STFT settings)
//! ```
//!
//! Tensor names are the reference's state dict (`text_encoder.*`, `audio_encoder.*`,
//! `decoder.*`, `enc_to_dec_proj.*`, `audio_enc_to_dec_proj.*`). Weight-normed convolutions are
//! read under either name the reference has used: `weight_g`/`weight_v` (the released
//! checkpoints) or `parametrizations.weight.original0/1` (what `save_pretrained` writes now).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::MusicgenConfig;
use crate::{MusicgenError, Result};

/// The files of one model directory.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub tokenizer: PathBuf,
    pub preprocessor: Option<PathBuf>,
}

impl ModelFiles {
    /// Finds the files of `dir`; a missing one is [`MusicgenError::WeightsMissing`] naming it.
    pub fn locate(dir: &Path, variation: &str) -> Result<Self> {
        let need = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(MusicgenError::WeightsMissing {
                    variation: variation.to_string(),
                    path: p,
                })
            }
        };
        let config = need("config.json")?;
        let tokenizer = need("tokenizer.json")?;
        let index = dir.join("model.safetensors.index.json");
        let weights = if index.is_file() {
            shards(&index)?
                .into_iter()
                .map(|f| need(&f))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![need("model.safetensors")?]
        };
        let pre = dir.join("preprocessor_config.json");
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights,
            tokenizer,
            preprocessor: pre.is_file().then_some(pre),
        })
    }
}

/// The shard files named by a `model.safetensors.index.json`, in name order.
pub fn shards(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| MusicgenError::invalid(index, e.to_string()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| MusicgenError::invalid(index, "no weight_map"))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    if files
        .iter()
        .any(|f| f.contains(['/', '\\']) || f.starts_with('.'))
    {
        return Err(MusicgenError::invalid(
            index,
            "shard names must be plain file names",
        ));
    }
    Ok(files)
}

/// Tensor names and shapes from the safetensors headers (no tensor data is read).
pub fn header_shapes(files: &[PathBuf]) -> Result<BTreeMap<String, Vec<usize>>> {
    let mut out = BTreeMap::new();
    for f in files {
        let mut file = std::fs::File::open(f)?;
        let mut len = [0u8; 8];
        std::io::Read::read_exact(&mut file, &mut len)?;
        let n = u64::from_le_bytes(len);
        if n > 100 << 20 {
            return Err(MusicgenError::invalid(
                f,
                "safetensors header larger than 100 MiB",
            ));
        }
        let mut header = vec![0u8; n as usize];
        std::io::Read::read_exact(&mut file, &mut header)?;
        let v: serde_json::Value = serde_json::from_slice(&header)
            .map_err(|e| MusicgenError::invalid(f, format!("safetensors header: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| MusicgenError::invalid(f, "safetensors header is not an object"))?;
        for (name, info) in obj {
            if name == "__metadata__" {
                continue;
            }
            let shape = info
                .get("shape")
                .and_then(|s| s.as_array())
                .map(|s| {
                    s.iter()
                        .filter_map(|d| d.as_u64().map(|d| d as usize))
                        .collect()
                })
                .ok_or_else(|| MusicgenError::invalid(f, format!("{name}: no shape")))?;
            out.insert(name.clone(), shape);
        }
    }
    Ok(out)
}

/// How the stored names differ from the ones the loaders ask for.
#[derive(Debug, Clone, Copy, Default)]
struct Aliases {
    parametrized_weight_norm: bool,
    embed_tokens_only: bool,
}

impl Aliases {
    fn of<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        let mut a = Self::default();
        let mut shared = false;
        let mut embed = false;
        for n in names {
            a.parametrized_weight_norm |= n.ends_with(".parametrizations.weight.original0");
            shared |= n == "text_encoder.shared.weight";
            embed |= n == "text_encoder.encoder.embed_tokens.weight";
        }
        a.embed_tokens_only = embed && !shared;
        a
    }

    /// The stored name of what the loaders call `name`.
    fn stored(&self, name: &str) -> String {
        if self.parametrized_weight_norm {
            if let Some(p) = name.strip_suffix(".weight_g") {
                return format!("{p}.parametrizations.weight.original0");
            }
            if let Some(p) = name.strip_suffix(".weight_v") {
                return format!("{p}.parametrizations.weight.original1");
            }
        }
        if self.embed_tokens_only && name == "text_encoder.shared.weight" {
            return "text_encoder.encoder.embed_tokens.weight".into();
        }
        name.to_string()
    }
}

/// A float32 [`VarBuilder`] over the files, memory-mapped, under the loaders' names.
pub fn var_builder(files: &[PathBuf], device: &Device) -> Result<VarBuilder<'static>> {
    let names = header_shapes(files)?;
    let aliases = Aliases::of(names.keys().map(String::as_str));
    // SAFETY: the files are memory-mapped read-only; like every safetensors reader we rely on
    // nobody truncating or rewriting them while the model loads (weights are copied out of
    // the mapping as tensors are built, and the mapping is dropped with the builder).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, DType::F32, device)? };
    Ok(vb.rename_f(move |n| aliases.stored(n)))
}

/// A [`VarBuilder`] over tensors held in memory (random models, tests), same renaming.
pub fn var_builder_from(tensors: HashMap<String, Tensor>, device: &Device) -> VarBuilder<'static> {
    let aliases = Aliases::of(tensors.keys().map(String::as_str));
    VarBuilder::from_tensors(tensors, DType::F32, device).rename_f(move |n| aliases.stored(n))
}

/// Every tensor the loaders read for `cfg`, with its shape, under the released checkpoints'
/// names. Used to check a download before it is kept and to build random models.
pub fn expected_tensors(cfg: &MusicgenConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut add = |name: String, shape: &[usize]| out.push((name, shape.to_vec()));
    let t = &cfg.text_encoder;
    let inner = t.num_heads * t.d_kv;
    add(
        "text_encoder.shared.weight".into(),
        &[t.vocab_size, t.d_model],
    );
    for i in 0..t.num_layers {
        let p = format!("text_encoder.encoder.block.{i}.layer");
        for w in ["q", "k", "v"] {
            add(
                format!("{p}.0.SelfAttention.{w}.weight"),
                &[inner, t.d_model],
            );
        }
        add(format!("{p}.0.SelfAttention.o.weight"), &[t.d_model, inner]);
        if i == 0 {
            add(
                format!("{p}.0.SelfAttention.relative_attention_bias.weight"),
                &[t.relative_attention_num_buckets, t.num_heads],
            );
        }
        add(format!("{p}.0.layer_norm.weight"), &[t.d_model]);
        add(
            format!("{p}.1.DenseReluDense.wi.weight"),
            &[t.d_ff, t.d_model],
        );
        add(
            format!("{p}.1.DenseReluDense.wo.weight"),
            &[t.d_model, t.d_ff],
        );
        add(format!("{p}.1.layer_norm.weight"), &[t.d_model]);
    }
    add(
        "text_encoder.encoder.final_layer_norm.weight".into(),
        &[t.d_model],
    );

    let d = &cfg.decoder;
    let h = d.hidden_size;
    if t.d_model != h {
        add("enc_to_dec_proj.weight".into(), &[h, t.d_model]);
        add("enc_to_dec_proj.bias".into(), &[h]);
    }
    if let Some(c) = cfg.num_chroma.filter(|_| cfg.is_melody()) {
        if c != h {
            add("audio_enc_to_dec_proj.weight".into(), &[h, c]);
            add("audio_enc_to_dec_proj.bias".into(), &[h]);
        }
    }
    let p = "decoder.model.decoder";
    for k in 0..d.num_codebooks {
        add(
            format!("{p}.embed_tokens.{k}.weight"),
            &[d.vocab_size + 1, h],
        );
        add(format!("decoder.lm_heads.{k}.weight"), &[d.vocab_size, h]);
    }
    let norm = |add: &mut dyn FnMut(String, &[usize]), n: String| {
        add(format!("{n}.weight"), &[h]);
        add(format!("{n}.bias"), &[h]);
    };
    for i in 0..d.num_hidden_layers {
        let l = format!("{p}.layers.{i}");
        let attn = |add: &mut dyn FnMut(String, &[usize]), a: &str| {
            for w in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                add(format!("{l}.{a}.{w}.weight"), &[h, h]);
            }
        };
        attn(&mut add, "self_attn");
        norm(&mut add, format!("{l}.self_attn_layer_norm"));
        if !cfg.is_melody() {
            attn(&mut add, "encoder_attn");
            norm(&mut add, format!("{l}.encoder_attn_layer_norm"));
        }
        add(format!("{l}.fc1.weight"), &[d.ffn_dim, h]);
        add(format!("{l}.fc2.weight"), &[h, d.ffn_dim]);
        norm(&mut add, format!("{l}.final_layer_norm"));
    }
    norm(&mut add, format!("{p}.layer_norm"));
    crate::encodec::expected_tensors(&cfg.audio_encoder, &mut add);
    out
}

/// Checks that `files` hold every tensor `cfg` needs with the right shape (headers only).
pub fn check_tensors(cfg: &MusicgenConfig, files: &[PathBuf]) -> Result<()> {
    let stored = header_shapes(files)?;
    let aliases = Aliases::of(stored.keys().map(String::as_str));
    let at = files.first().cloned().unwrap_or_default();
    for (name, shape) in expected_tensors(cfg) {
        let key = aliases.stored(&name);
        match stored.get(&key) {
            None => {
                return Err(MusicgenError::invalid(
                    &at,
                    format!("tensor {key} is missing"),
                ))
            }
            Some(s) if *s != shape => {
                return Err(MusicgenError::invalid(
                    &at,
                    format!("tensor {key} has shape {s:?}, the config needs {shape:?}"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_weight_norm_and_tied_embeddings() {
        let a = Aliases::of(
            [
                "audio_encoder.decoder.layers.0.conv.parametrizations.weight.original0",
                "text_encoder.encoder.embed_tokens.weight",
            ]
            .into_iter(),
        );
        assert_eq!(
            a.stored("audio_encoder.decoder.layers.0.conv.weight_v"),
            "audio_encoder.decoder.layers.0.conv.parametrizations.weight.original1"
        );
        assert_eq!(
            a.stored("text_encoder.shared.weight"),
            "text_encoder.encoder.embed_tokens.weight"
        );
        let plain = Aliases::of(["x.weight_g", "text_encoder.shared.weight"].into_iter());
        assert_eq!(plain.stored("x.weight_g"), "x.weight_g");
        assert_eq!(
            plain.stored("text_encoder.shared.weight"),
            "text_encoder.shared.weight"
        );
    }
}
