//! What a job writes (its outputs, by name) and the presets: small pipelines of jobs on one
//! file, where a step reads another step's output. Presets are data: adding a step is one more
//! [`PresetStep`] in [`presets`], validated by the same [`plan`] as every other pipeline.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{json, Value};

use super::{names, resolve, CatalogError, Resolved};

/// One output of a job, named as a pipeline step's input names it: the file name without its
/// extension (`vocals` for `vocals.wav`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputSpec {
    pub name: String,
    /// Audio another model can read (a stem, generated music); the rest is analysis.
    pub audio: bool,
}

fn out(name: &str, audio: bool) -> OutputSpec {
    OutputSpec {
        name: name.into(),
        audio,
    }
}

/// The sources a demucs variation separates, in the model's order.
fn demucs_sources(variation: &str) -> &'static [&'static str] {
    match variation {
        "htdemucs_6s" => &["drums", "bass", "other", "vocals", "guitar", "piano"],
        _ => &["drums", "bass", "other", "vocals"],
    }
}

/// The outputs a job of `r` writes (as the model's worker names them). Gemma 3n's lyric files
/// are not listed: they are text, and only audio is another step's input.
pub fn outputs(r: &Resolved) -> Vec<OutputSpec> {
    match r.model {
        "demucs" => {
            let sources = demucs_sources(&r.variation);
            if let Some(stem) = r.params.get("two_stems").and_then(Value::as_str) {
                return vec![out(stem, true), out(&format!("no_{stem}"), true)];
            }
            match r.params.get("stems").and_then(Value::as_array) {
                Some(chosen) => chosen
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|s| sources.contains(s))
                    .map(|s| out(s, true))
                    .collect(),
                None => sources.iter().map(|s| out(s, true)).collect(),
            }
        }
        "whisper" => ["transcription", "segments", "transcript", "verbose"]
            .iter()
            .map(|n| out(n, false))
            .collect(),
        "pitch" => ["f0", "notes", "summary"]
            .iter()
            .map(|n| out(n, false))
            .collect(),
        "musicgen" => vec![out("generated", true), out("generation", false)],
        _ => Vec::new(),
    }
}

/// Every audio output a job of `model` can write, under any variation or params (demucs:
/// each source of each variation, and `no_<source>` for `two_stems`), first seen first. The
/// API's schema offers these as an `input: {model, output}`; whether one job writes the named
/// output is [`check_output`]'s to say.
pub fn audio_output_names(model: &super::ModelSpec) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for v in &model.variations {
        let r = Resolved {
            model: model.name,
            variation: v.name.into(),
            model_version: v.model_version.into(),
            params: json!({}),
        };
        let mut found: Vec<String> = outputs(&r)
            .into_iter()
            .filter(|o| o.audio)
            .map(|o| o.name)
            .collect();
        if model.name == "demucs" {
            found.extend(demucs_sources(v.name).iter().map(|s| format!("no_{s}")));
        }
        for n in found {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

/// A step of a preset, as data.
#[derive(Debug, Clone, Serialize)]
pub struct PresetStep {
    /// Unique in the preset; a later step's `input` names it.
    pub name: &'static str,
    pub model: &'static str,
    /// `None`: the model's default.
    pub variation: Option<&'static str>,
    /// Checked and normalised like a `/process` request's params.
    pub params: Value,
    /// `(step, output)`: the upstream step and which of its outputs this step reads; `None`
    /// reads the upload.
    pub input: Option<(&'static str, &'static str)>,
}

/// A named pipeline `POST /process {file_id, preset}` expands.
#[derive(Debug, Clone, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    /// Upstream steps first.
    pub steps: Vec<PresetStep>,
}

fn step(
    name: &'static str,
    model: &'static str,
    params: Value,
    input: Option<(&'static str, &'static str)>,
) -> PresetStep {
    PresetStep {
        name,
        model,
        variation: None,
        params,
        input,
    }
}

/// Every preset, in a stable order.
pub fn presets() -> &'static [Preset] {
    static ALL: LazyLock<Vec<Preset>> = LazyLock::new(|| {
        let separate_vocals = || step("separate", "demucs", json!({"two_stems": "vocals"}), None);
        let transcribe = || {
            step(
                "transcribe",
                "whisper",
                json!({"word_timestamps": true}),
                Some(("separate", "vocals")),
            )
        };
        // The gemma3n worker hears and times the words itself (Whisper on the stem it reads), so
        // its step reads the vocals, not the transcribe step's text.
        let lyrics = || step("lyrics", "gemma3n", json!({}), Some(("separate", "vocals")));
        vec![
            Preset {
                name: "karaoke",
                description: "vocals separated from the accompaniment, then the vocals \
                              transcribed with word timestamps, their pitch tracked and their \
                              lyrics written in timed lines",
                steps: vec![
                    separate_vocals(),
                    transcribe(),
                    step("pitch", "pitch", json!({}), Some(("separate", "vocals"))),
                    lyrics(),
                ],
            },
            Preset {
                name: "lyrics",
                description: "vocals separated, transcribed with word timestamps, and written \
                              as timed lyric lines and sections (txt, json, LRC, SRT, WebVTT)",
                steps: vec![separate_vocals(), transcribe(), lyrics()],
            },
            Preset {
                name: "stems",
                description: "the four stems: drums, bass, other, vocals",
                steps: vec![step("separate", "demucs", json!({}), None)],
            },
            Preset {
                name: "transcribe-vocals",
                description:
                    "vocals separated, then transcribed with word timestamps (not the mix)",
                steps: vec![separate_vocals(), transcribe()],
            },
        ]
    });
    &ALL
}

/// The preset `name`, or an error listing the presets.
pub fn preset(name: &str) -> Result<&'static Preset, CatalogError> {
    presets()
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| CatalogError::UnknownPreset {
            got: name.into(),
            valid: names(presets().iter().map(|p| p.name)),
        })
}

/// A step as a request gives it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    pub name: String,
    pub model: String,
    pub variation: Option<String>,
    pub params: Option<Value>,
    /// `(step, output)`.
    pub input: Option<(String, String)>,
}

impl From<&PresetStep> for StepRequest {
    fn from(s: &PresetStep) -> Self {
        Self {
            name: s.name.into(),
            model: s.model.into(),
            variation: s.variation.map(Into::into),
            params: Some(s.params.clone()),
            input: s.input.map(|(st, o)| (st.into(), o.into())),
        }
    }
}

/// A validated step: its model request resolved, its input (if any) an earlier step's output.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub name: String,
    pub resolved: Resolved,
    pub input: Option<(String, String)>,
}

/// Most steps in one pipeline.
pub const MAX_STEPS: usize = 20;

fn valid_step_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a pipeline and orders it upstream first: every model request resolves, step names are
/// unique, every input names a step of the pipeline and one of its audio outputs, and the steps
/// form no cycle. Messages say what is valid.
pub fn plan(steps: &[StepRequest]) -> Result<Vec<PlannedStep>, CatalogError> {
    let bad = |m: String| CatalogError::InvalidPipeline(m);
    if steps.is_empty() {
        return Err(bad("a pipeline needs at least one step".into()));
    }
    if steps.len() > MAX_STEPS {
        return Err(bad(format!("at most {MAX_STEPS} steps per pipeline")));
    }
    let mut seen = HashSet::new();
    for s in steps {
        if !valid_step_name(&s.name) {
            return Err(bad(format!(
                "step name {:?}: use 1-64 letters, digits, - or _",
                s.name
            )));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(bad(format!("two steps are named {:?}", s.name)));
        }
    }
    let mut resolved = Vec::with_capacity(steps.len());
    for s in steps {
        let r = resolve(&s.model, s.variation.as_deref(), s.params.as_ref())
            .map_err(|e| CatalogError::InvalidPipeline(format!("step {:?}: {e}", s.name)))?;
        resolved.push(r);
    }
    for (s, _) in steps.iter().zip(&resolved) {
        let Some((up, output)) = &s.input else {
            continue;
        };
        let Some(i) = steps.iter().position(|u| &u.name == up) else {
            return Err(bad(format!(
                "step {:?} reads step {up:?}, which is not in the pipeline (steps: {})",
                s.name,
                names(steps.iter().map(|s| s.name.as_str()))
            )));
        };
        check_output(&resolved[i], output)
            .map_err(|m| bad(format!("step {:?} reads step {up:?}: {m}", s.name)))?;
    }
    // Kahn's order: a step goes once the step it reads is placed; whatever never goes is on a
    // cycle.
    let mut placed: Vec<usize> = Vec::with_capacity(steps.len());
    while placed.len() < steps.len() {
        let before = placed.len();
        for (i, s) in steps.iter().enumerate() {
            if placed.contains(&i) {
                continue;
            }
            let ready = match &s.input {
                None => true,
                Some((up, _)) => placed.iter().any(|&p| &steps[p].name == up),
            };
            if ready {
                placed.push(i);
            }
        }
        if placed.len() == before {
            let stuck: Vec<&str> = (0..steps.len())
                .filter(|i| !placed.contains(i))
                .map(|i| steps[i].name.as_str())
                .collect();
            return Err(bad(format!(
                "the steps {} read each other in a cycle",
                stuck.join(", ")
            )));
        }
    }
    Ok(placed
        .into_iter()
        .map(|i| PlannedStep {
            name: steps[i].name.clone(),
            resolved: resolved[i].clone(),
            input: steps[i].input.clone(),
        })
        .collect())
}

/// Whether a job of `upstream` writes an audio output `output`; the message lists those it has.
pub fn check_output(upstream: &Resolved, output: &str) -> Result<(), String> {
    let outs = outputs(upstream);
    let audio = names(outs.iter().filter(|o| o.audio).map(|o| o.name.as_str()));
    match outs.iter().find(|o| o.name == output) {
        Some(o) if o.audio => Ok(()),
        Some(_) => Err(format!(
            "{}'s output {output:?} is not audio; audio outputs: {audio}",
            upstream.model
        )),
        None if outs.is_empty() => Err(format!(
            "{} writes no output another job can read",
            upstream.model
        )),
        None => Err(format!(
            "{} ({}) has no output {output:?}; audio outputs: {audio}",
            upstream.model, upstream.variation
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, model: &str, input: Option<(&str, &str)>) -> StepRequest {
        StepRequest {
            name: name.into(),
            model: model.into(),
            variation: None,
            params: None,
            input: input.map(|(s, o)| (s.into(), o.into())),
        }
    }

    #[test]
    fn every_preset_plans_and_karaoke_reads_the_vocals() {
        for p in presets() {
            let steps: Vec<StepRequest> = p.steps.iter().map(StepRequest::from).collect();
            let planned = plan(&steps).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(planned.len(), p.steps.len(), "{}", p.name);
        }
        let k = preset("karaoke").unwrap();
        let planned = plan(&k.steps.iter().map(StepRequest::from).collect::<Vec<_>>()).unwrap();
        assert_eq!(planned[0].resolved.params["two_stems"], "vocals");
        assert_eq!(planned[1].resolved.params["word_timestamps"], true);
        for s in &planned[1..] {
            assert_eq!(s.input, Some(("separate".into(), "vocals".into())));
        }
        let e = preset("karaoky").unwrap_err().to_string();
        assert!(
            e.contains("karaoke, lyrics, stems, transcribe-vocals"),
            "{e}"
        );
        let l = preset("lyrics").unwrap();
        let models: Vec<&str> = l.steps.iter().map(|s| s.model).collect();
        assert_eq!(models, ["demucs", "whisper", "gemma3n"]);
        assert_eq!(l.steps[2].input, Some(("separate", "vocals")));
        assert!(k.steps.iter().any(|s| s.model == "gemma3n"));
    }

    #[test]
    fn a_jobs_outputs_follow_its_variation_and_params() {
        let names =
            |r: Resolved| -> Vec<String> { outputs(&r).into_iter().map(|o| o.name).collect() };
        let d = |v: Option<&str>, p: Value| resolve("demucs", v, Some(&p)).unwrap();
        assert_eq!(
            names(d(None, json!({}))),
            ["drums", "bass", "other", "vocals"]
        );
        assert_eq!(
            names(d(None, json!({"two_stems": "vocals"}))),
            ["vocals", "no_vocals"]
        );
        assert_eq!(
            names(d(Some("htdemucs_6s"), json!({"stems": ["piano"]}))),
            ["piano"]
        );
        assert!(names(d(None, json!({"stems": ["piano"]}))).is_empty());
        let pitch = resolve("pitch", None, None).unwrap();
        assert!(check_output(&pitch, "f0")
            .unwrap_err()
            .contains("not audio"));
        let vocals = d(None, json!({"two_stems": "vocals"}));
        assert!(check_output(&vocals, "vocals").is_ok());
        let e = check_output(&vocals, "drums").unwrap_err();
        assert!(e.contains("vocals, no_vocals"), "{e}");
    }

    #[test]
    fn audio_output_names_cover_every_variation_and_only_audio() {
        let of = |m: &str| {
            let spec = crate::catalog::models()
                .iter()
                .find(|s| s.name == m)
                .unwrap();
            audio_output_names(spec)
        };
        let demucs = of("demucs");
        for n in ["vocals", "no_vocals", "drums", "guitar", "no_piano"] {
            assert!(demucs.contains(&n.to_string()), "{n}: {demucs:?}");
        }
        assert_eq!(demucs.len(), 12, "{demucs:?}");
        // Each name is one some job of the model writes.
        let six = resolve(
            "demucs",
            Some("htdemucs_6s"),
            Some(&json!({"two_stems": "piano"})),
        );
        assert!(check_output(&six.unwrap(), "no_piano").is_ok());
        assert_eq!(of("musicgen"), ["generated"]);
        assert!(of("whisper").is_empty() && of("pitch").is_empty());
    }

    #[test]
    fn a_bad_pipeline_says_what_is_wrong() {
        let err = |steps: &[StepRequest]| plan(steps).unwrap_err().to_string();
        let e = err(&[
            req("a", "whisper", Some(("b", "vocals"))),
            req("b", "pitch", Some(("a", "x"))),
        ]);
        assert!(e.contains("whisper") || e.contains("pitch"), "{e}");
        // A true cycle: both read audio outputs of each other.
        let e = err(&[
            req("a", "demucs", Some(("b", "vocals"))),
            req("b", "demucs", Some(("a", "vocals"))),
        ]);
        assert!(e.contains("cycle") && e.contains("a, b"), "{e}");
        let e = err(&[req("a", "demucs", Some(("a", "vocals")))]);
        assert!(e.contains("cycle"), "{e}");
        let e = err(&[req("a", "pitch", Some(("z", "vocals")))]);
        assert!(e.contains("not in the pipeline"), "{e}");
        let e = err(&[req("a", "demucs", None), req("a", "pitch", None)]);
        assert!(e.contains("two steps"), "{e}");
        let e = err(&[
            req("a", "demucs", None),
            req("b", "pitch", Some(("a", "guitar"))),
        ]);
        assert!(e.contains("no output \"guitar\""), "{e}");
        let e = err(&[req("a b", "demucs", None)]);
        assert!(e.contains("step name"), "{e}");
        assert!(plan(&[]).is_err());
        let e = err(&[req("a", "nope", None)]);
        assert!(
            e.contains("step \"a\"") && e.contains("valid models"),
            "{e}"
        );
        // Declared downstream first: planned upstream first.
        let p = plan(&[
            req("b", "pitch", Some(("a", "vocals"))),
            req("a", "demucs", None),
        ])
        .unwrap();
        assert_eq!(p[0].name, "a");
    }
}
