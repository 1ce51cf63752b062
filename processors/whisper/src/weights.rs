//! Finding and loading a model directory in either layout:
//!
//! * CTranslate2 (what the registry packages ship): `model.bin`, `config.json` (suppressed
//!   tokens, language ids, alignment heads), `tokenizer.json`.
//! * Hugging Face: `model.safetensors`, `config.json` (`d_model`, `encoder_layers`...),
//!   optional `generation_config.json` (alignment heads), `tokenizer.json`. Users get these
//!   from the hub, e.g. `huggingface-cli download openai/whisper-tiny model.safetensors
//!   config.json generation_config.json tokenizer.json --local-dir models/whisper/tiny`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::ct2::{self, Ct2Model};
use crate::error::{Result, WhisperError};
use crate::model::{Dims, Weights};

/// Decoding hints that ship with the weights.
#[derive(Debug, Clone, Default)]
pub struct ModelHints {
    /// Tokens never to emit.
    pub suppress: Vec<u32>,
    /// Tokens never to emit first.
    pub suppress_begin: Vec<u32>,
    /// `(decoder layer, head)` pairs whose cross-attention follows the speech.
    pub alignment_heads: Vec<(usize, usize)>,
}

/// What a model directory holds, ready to build the network from.
pub(crate) struct Loaded {
    pub(crate) dims: Dims,
    pub(crate) weights: Weights,
    pub(crate) hints: ModelHints,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| WhisperError::invalid(path, e.to_string()))
}

fn ids(v: &Value, key: &str) -> Vec<u32> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_i64())
                .filter(|&x| x >= 0)
                .map(|x| x as u32)
                .collect()
        })
        .unwrap_or_default()
}

fn heads(v: &Value, key: &str) -> Vec<(usize, usize)> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_u64()? as usize, p.get(1)?.as_u64()? as usize)))
                .collect()
        })
        .unwrap_or_default()
}

/// The last half of the decoder layers, every head: Whisper's fallback when a model
/// names no alignment heads.
fn default_heads(d: &Dims) -> Vec<(usize, usize)> {
    (d.n_text_layer / 2..d.n_text_layer)
        .flat_map(|l| (0..d.n_text_head).map(move |h| (l, h)))
        .collect()
}

/// Both layouts end the same way: Whisper's default alignment heads when the files name none.
fn loaded(
    dims: Dims,
    map: HashMap<String, Tensor>,
    device: &Device,
    mut hints: ModelHints,
) -> Loaded {
    if hints.alignment_heads.is_empty() {
        hints.alignment_heads = default_heads(&dims);
    }
    Loaded {
        dims,
        weights: Weights {
            map,
            device: device.clone(),
            precision: crate::Precision::F32,
        },
        hints,
    }
}

/// Loads `dir` (one variation's directory) onto `device`.
pub(crate) fn load_dir(dir: &Path, device: &Device) -> Result<Loaded> {
    if dir.join("model.bin").is_file() {
        load_ct2(dir, device)
    } else {
        load_safetensors(dir, device)
    }
}

fn load_ct2(dir: &Path, device: &Device) -> Result<Loaded> {
    let path = dir.join("model.bin");
    let bytes = std::fs::read(&path)?;
    let m = ct2::parse(&bytes, &path)?;
    drop(bytes);
    if m.spec != "WhisperSpec" {
        return Err(WhisperError::invalid(
            &path,
            format!("spec {} is not WhisperSpec", m.spec),
        ));
    }
    let dims = ct2_dims(&m, &path)?;
    let map = ct2_to_hf(&m, &dims, &path)?;
    let cfg_path = dir.join("config.json");
    let cfg = if cfg_path.is_file() {
        read_json(&cfg_path)?
    } else {
        Value::Null
    };
    let hints = ModelHints {
        suppress: ids(&cfg, "suppress_ids"),
        suppress_begin: ids(&cfg, "suppress_ids_begin"),
        alignment_heads: heads(&cfg, "alignment_heads"),
    };
    Ok(loaded(dims, map, device, hints))
}

fn ct2_dims(m: &Ct2Model, path: &Path) -> Result<Dims> {
    let count = |prefix: &str| {
        (0..)
            .take_while(|i| m.has(&format!("{prefix}/layer_{i}/ffn/linear_0/weight")))
            .count()
    };
    let emb = m.shape("decoder/embeddings/weight", path)?;
    let conv1 = m.shape("encoder/conv1/weight", path)?;
    let apos = m.shape("encoder/position_encodings/encodings", path)?;
    let tpos = m.shape("decoder/position_encodings/encodings", path)?;
    if emb.len() != 2 || conv1.len() != 3 || apos.len() != 2 || tpos.len() != 2 {
        return Err(WhisperError::invalid(
            path,
            "unexpected tensor ranks for a Whisper model",
        ));
    }
    Ok(Dims {
        n_mels: conv1[1],
        n_audio_ctx: apos[0],
        n_audio_state: apos[1],
        n_audio_head: m.scalar("encoder/num_heads", path)? as usize,
        n_audio_layer: count("encoder"),
        n_vocab: emb[0],
        n_text_ctx: tpos[0],
        n_text_state: emb[1],
        n_text_head: m.scalar("decoder/num_heads", path)? as usize,
        n_text_layer: count("decoder"),
    })
}

/// Maps CTranslate2 variable names onto Hugging Face ones, splitting the fused
/// projections (self-attention `linear_0` = q|k|v, cross-attention `linear_1` = k|v).
fn ct2_to_hf(m: &Ct2Model, d: &Dims, path: &Path) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let mut put = |hf: String, t: Tensor| {
        out.insert(hf, t);
    };
    let t = |name: &str| m.tensor(name, path);
    let split = |name: &str, parts: usize| -> Result<Vec<Tensor>> {
        let x = t(name)?;
        let n = x.dim(0)? / parts;
        (0..parts).map(|i| Ok(x.narrow(0, i * n, n)?)).collect()
    };
    let linear = |put: &mut dyn FnMut(String, Tensor), ct: &str, hf: &str| -> Result<()> {
        put(format!("{hf}.weight"), t(&format!("{ct}/weight"))?);
        put(format!("{hf}.bias"), t(&format!("{ct}/bias"))?);
        Ok(())
    };
    let norm = |put: &mut dyn FnMut(String, Tensor), ct: &str, hf: &str| -> Result<()> {
        put(format!("{hf}.weight"), t(&format!("{ct}/gamma"))?);
        put(format!("{hf}.bias"), t(&format!("{ct}/beta"))?);
        Ok(())
    };
    let fused =
        |put: &mut dyn FnMut(String, Tensor), ct: &str, hf: &str, names: &[&str]| -> Result<()> {
            let w = split(&format!("{ct}/weight"), names.len())?;
            let b = split(&format!("{ct}/bias"), names.len())?;
            for ((n, w), b) in names.iter().zip(w).zip(b) {
                put(format!("{hf}.{n}.weight"), w);
                // Whisper's key projection has no bias; the fused one carries zeros there.
                if *n != "k_proj" {
                    put(format!("{hf}.{n}.bias"), b);
                }
            }
            Ok(())
        };
    for side in ["encoder", "decoder"] {
        let hf = format!("model.{side}");
        put(
            format!("{hf}.embed_positions.weight"),
            t(&format!("{side}/position_encodings/encodings"))?,
        );
        norm(
            &mut put,
            &format!("{side}/layer_norm"),
            &format!("{hf}.layer_norm"),
        )?;
        let layers = if side == "encoder" {
            d.n_audio_layer
        } else {
            d.n_text_layer
        };
        for i in 0..layers {
            let (ct, hl) = (format!("{side}/layer_{i}"), format!("{hf}.layers.{i}"));
            fused(
                &mut put,
                &format!("{ct}/self_attention/linear_0"),
                &format!("{hl}.self_attn"),
                &["q_proj", "k_proj", "v_proj"],
            )?;
            linear(
                &mut put,
                &format!("{ct}/self_attention/linear_1"),
                &format!("{hl}.self_attn.out_proj"),
            )?;
            norm(
                &mut put,
                &format!("{ct}/self_attention/layer_norm"),
                &format!("{hl}.self_attn_layer_norm"),
            )?;
            linear(
                &mut put,
                &format!("{ct}/ffn/linear_0"),
                &format!("{hl}.fc1"),
            )?;
            linear(
                &mut put,
                &format!("{ct}/ffn/linear_1"),
                &format!("{hl}.fc2"),
            )?;
            norm(
                &mut put,
                &format!("{ct}/ffn/layer_norm"),
                &format!("{hl}.final_layer_norm"),
            )?;
            if side == "decoder" {
                linear(
                    &mut put,
                    &format!("{ct}/attention/linear_0"),
                    &format!("{hl}.encoder_attn.q_proj"),
                )?;
                fused(
                    &mut put,
                    &format!("{ct}/attention/linear_1"),
                    &format!("{hl}.encoder_attn"),
                    &["k_proj", "v_proj"],
                )?;
                linear(
                    &mut put,
                    &format!("{ct}/attention/linear_2"),
                    &format!("{hl}.encoder_attn.out_proj"),
                )?;
                norm(
                    &mut put,
                    &format!("{ct}/attention/layer_norm"),
                    &format!("{hl}.encoder_attn_layer_norm"),
                )?;
            }
        }
    }
    for c in ["conv1", "conv2"] {
        linear(
            &mut put,
            &format!("encoder/{c}"),
            &format!("model.encoder.{c}"),
        )?;
    }
    put(
        "model.decoder.embed_tokens.weight".into(),
        t("decoder/embeddings/weight")?,
    );
    Ok(out)
}

fn load_safetensors(dir: &Path, device: &Device) -> Result<Loaded> {
    let st = dir.join("model.safetensors");
    let cfg_path = dir.join("config.json");
    for p in [&st, &cfg_path] {
        if !p.is_file() {
            return Err(WhisperError::WeightsMissing {
                path: p.clone(),
                dir: dir.parent().unwrap_or(dir).to_path_buf(),
                variation: dir
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            });
        }
    }
    let cfg = read_json(&cfg_path)?;
    let get = |k: &str| -> Result<usize> {
        cfg.get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| WhisperError::invalid(&cfg_path, format!("missing {k}")))
    };
    let dims = Dims {
        n_mels: get("num_mel_bins")?,
        n_audio_ctx: get("max_source_positions")?,
        n_audio_state: get("d_model")?,
        n_audio_head: get("encoder_attention_heads")?,
        n_audio_layer: get("encoder_layers")?,
        n_vocab: get("vocab_size")?,
        n_text_ctx: get("max_target_positions")?,
        n_text_state: get("d_model")?,
        n_text_head: get("decoder_attention_heads")?,
        n_text_layer: get("decoder_layers")?,
    };
    let raw = candle_core::safetensors::load(&st, &Device::Cpu)
        .map_err(|e| WhisperError::invalid(&st, e.to_string()))?;
    // Some exports drop the `model.` prefix.
    let map = raw
        .into_iter()
        .map(|(k, v)| {
            if k.starts_with("model.") || k == "proj_out.weight" {
                (k, v)
            } else {
                (format!("model.{k}"), v)
            }
        })
        .collect();
    let gen_path = dir.join("generation_config.json");
    let gen = if gen_path.is_file() {
        read_json(&gen_path)?
    } else {
        Value::Null
    };
    let pick = |k: &str| {
        if gen.get(k).is_some() {
            ids(&gen, k)
        } else {
            ids(&cfg, k)
        }
    };
    let hints = ModelHints {
        suppress: pick("suppress_tokens"),
        suppress_begin: pick("begin_suppress_tokens"),
        alignment_heads: heads(&gen, "alignment_heads"),
    };
    Ok(loaded(dims, map, device, hints))
}

/// Converts a CTranslate2 Whisper directory into the Hugging Face layout
/// (`model.safetensors` in float16, `config.json`, `generation_config.json`,
/// `tokenizer.json`), e.g. to use the registry weights with other tools.
pub fn convert_ct2_to_safetensors(ct2_dir: &Path, out_dir: &Path) -> Result<()> {
    let loaded = load_ct2(ct2_dir, &Device::Cpu)?;
    let d = &loaded.dims;
    std::fs::create_dir_all(out_dir)?;
    let map = loaded
        .weights
        .map
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(candle_core::DType::F16)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    candle_core::safetensors::save(&map, out_dir.join("model.safetensors"))?;
    let config = serde_json::json!({
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "num_mel_bins": d.n_mels,
        "max_source_positions": d.n_audio_ctx,
        "d_model": d.n_audio_state,
        "encoder_attention_heads": d.n_audio_head,
        "encoder_layers": d.n_audio_layer,
        "vocab_size": d.n_vocab,
        "max_target_positions": d.n_text_ctx,
        "decoder_attention_heads": d.n_text_head,
        "decoder_layers": d.n_text_layer,
        "suppress_tokens": loaded.hints.suppress,
        "begin_suppress_tokens": loaded.hints.suppress_begin,
    });
    let generation = serde_json::json!({
        "alignment_heads": loaded.hints.alignment_heads.iter().map(|(l, h)| [l, h]).collect::<Vec<_>>(),
        "suppress_tokens": loaded.hints.suppress,
        "begin_suppress_tokens": loaded.hints.suppress_begin,
    });
    let write = |name: &str, v: &Value| -> Result<()> {
        let text = serde_json::to_string_pretty(v)
            .map_err(|e| WhisperError::InvalidInput(e.to_string()))?;
        Ok(std::fs::write(out_dir.join(name), text)?)
    };
    write("config.json", &config)?;
    write("generation_config.json", &generation)?;
    std::fs::copy(
        ct2_dir.join("tokenizer.json"),
        out_dir.join("tokenizer.json"),
    )?;
    Ok(())
}
