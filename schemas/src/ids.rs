//! Deterministic ids. A file id comes from its owner and content hash, so a duplicate upload
//! maps to the existing file and replays are idempotent; a job id comes from everything that
//! determines a job's outputs, so asking twice names the same job.

use sha2::{Digest, Sha256};

use crate::events::{EventMeta, JobInput, JobRequested};
use crate::pipeline::PipelineStep;

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// `f` + 32 hex characters, from the owner and the content's sha256 (hex).
pub fn file_id(owner: &str, content_sha256: &str) -> String {
    format!(
        "f{}",
        digest(&["roar.file.v1", owner, &content_sha256.to_ascii_lowercase()])
    )
}

/// `f` + 32 hex characters for a song a model generates: from the owner and everything that
/// determines the song (model, variation, canonical params, model version), so asking twice
/// names the same file. Its own domain keeps it apart from every uploaded file's id.
pub fn generated_file_id(
    owner: &str,
    model: &str,
    variation: &str,
    params_json: &str,
    model_version: &str,
) -> String {
    format!(
        "f{}",
        digest(&[
            "roar.generated-file.v1",
            owner,
            model,
            variation,
            params_json,
            model_version
        ])
    )
}

/// `j` + 32 hex characters, from the file, model, variation, canonical params and model version
/// of a job that reads the uploaded file. [`JobIdentity`] derives every job's id.
pub fn job_id(
    file_id: &str,
    model: &str,
    variation: &str,
    params_json: &str,
    model_version: &str,
) -> String {
    format!(
        "j{}",
        digest(&[
            "roar.job.v1",
            file_id,
            model,
            variation,
            params_json,
            model_version
        ])
    )
}

/// What names a job: the file, model, variation, parameters (canonical JSON), model version and
/// input (everything that determines its outputs) with the id derived from them. [`JobIdentity::new`]
/// is the one place a job id is derived, so a request, a retry and a replay cannot disagree on
/// it; [`JobIdentity::request`] is the one way to a [`JobRequested`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    job_id: String,
    file_id: String,
    model: String,
    variation: String,
    params_json: String,
    model_version: String,
    input: Option<JobInput>,
}

impl JobIdentity {
    /// `params` are the normalised parameters (the catalogue's `Resolved::params`); any key
    /// order names the same job.
    pub fn new(
        file_id: &str,
        model: &str,
        variation: &str,
        params: &serde_json::Value,
        model_version: &str,
    ) -> Self {
        let params_json = canonical_json(params);
        Self {
            job_id: job_id(file_id, model, variation, &params_json, model_version),
            file_id: file_id.to_string(),
            model: model.to_string(),
            variation: variation.to_string(),
            params_json,
            model_version: model_version.to_string(),
            input: None,
        }
    }

    /// The same job reading `input` (another job's output) instead of the upload: another id.
    /// The upstream job id stands for the upstream's model, variation and parameters, so only
    /// it and the output's name enter the digest; a job on the upload keeps the id it always had.
    pub fn reading(mut self, input: JobInput) -> Self {
        self.job_id = format!(
            "j{}",
            digest(&[
                "roar.job.v2",
                &self.file_id,
                &self.model,
                &self.variation,
                &self.params_json,
                &self.model_version,
                &input.job_id,
                &input.output,
            ])
        );
        self.input = Some(input);
        self
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    pub fn input(&self) -> Option<&JobInput> {
        self.input.as_ref()
    }

    /// The request for `attempt` (1 for the first) of this job, `owner`'s, to start at once.
    pub fn request(self, meta: EventMeta, owner: String, attempt: i32) -> JobRequested {
        JobRequested {
            meta,
            job_id: self.job_id,
            file_id: self.file_id,
            owner,
            model: self.model,
            variation: self.variation,
            model_version: self.model_version,
            params_json: self.params_json,
            attempt,
            not_before: None,
            input: self.input,
        }
    }
}

/// `p` + 32 hex characters, from the owner, the file and the job ids of its steps (in any
/// order): asking for the same steps twice names the same pipeline. Every step's job id covers
/// its model, parameters and input, so the job ids alone stand for the whole DAG.
pub fn pipeline_id<'a>(
    owner: &str,
    file_id: &str,
    job_ids: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut ids: Vec<&str> = job_ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = vec!["roar.pipeline.v1", owner, file_id];
    parts.extend(ids);
    format!("p{}", digest(&parts))
}

/// Why a pipeline step's job identity cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("step {step:?} reads step {upstream:?}, which is not in the pipeline")]
    UnknownUpstream { step: String, upstream: String },
    #[error("step {step:?}: params_json is not a JSON object: {message}")]
    Params { step: String, message: String },
}

impl StepError {
    /// The pipeline event says what it says: re-reading it cannot help.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The identity of `step`'s job in a pipeline on `file_id` whose steps are `steps`: a step that
/// reads another step's output reads that step's job (`JobInput` with the upstream's job id,
/// model and variation). The orchestrator derives `PipelineStep::job_id` with it, and the
/// process manager requests the job with [`JobIdentity::request`] from it, so both agree.
pub fn step_identity(
    file_id: &str,
    steps: &[PipelineStep],
    step: &PipelineStep,
) -> Result<JobIdentity, StepError> {
    let params: serde_json::Value =
        serde_json::from_str(&step.params_json).map_err(|e| StepError::Params {
            step: step.name.clone(),
            message: e.to_string(),
        })?;
    if !params.is_object() {
        return Err(StepError::Params {
            step: step.name.clone(),
            message: "not an object".into(),
        });
    }
    let id = JobIdentity::new(
        file_id,
        &step.model,
        &step.variation,
        &params,
        &step.model_version,
    );
    let Some(input) = &step.input else {
        return Ok(id);
    };
    let upstream =
        steps
            .iter()
            .find(|s| s.name == input.step)
            .ok_or_else(|| StepError::UnknownUpstream {
                step: step.name.clone(),
                upstream: input.step.clone(),
            })?;
    Ok(id.reading(JobInput {
        job_id: upstream.job_id.clone(),
        model: upstream.model.clone(),
        variation: upstream.variation.clone(),
        output: input.output.clone(),
    }))
}

/// A file or job id as this crate makes them: a letter and 32 lowercase hex digits. Anything
/// else (path tricks included) is rejected before it reaches storage or SQL.
pub fn is_valid_id(prefix: char, id: &str) -> bool {
    id.len() == 33
        && id.starts_with(prefix)
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Canonical JSON: object keys sorted at every level, no insignificant whitespace. Two requests
/// with the same parameters in another order name the same job.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_id_depends_on_owner_and_content() {
        let a = file_id("alice", "ab");
        assert_eq!(a, file_id("alice", "AB"));
        assert_ne!(a, file_id("bob", "ab"));
        assert_ne!(a, file_id("alice", "ac"));
        assert!(is_valid_id('f', &a));
        assert!(!is_valid_id('j', &a));
        assert!(!is_valid_id('f', "f../../etc/passwd000000000000000000"));
    }

    #[test]
    fn a_generated_file_id_is_its_request_and_never_an_upload() {
        let g = generated_file_id("alice", "musicgen", "small", r#"{"prompt":"x"}"#, "1");
        assert_eq!(
            g,
            generated_file_id("alice", "musicgen", "small", r#"{"prompt":"x"}"#, "1")
        );
        assert!(is_valid_id('f', &g));
        for other in [
            generated_file_id("bob", "musicgen", "small", r#"{"prompt":"x"}"#, "1"),
            generated_file_id("alice", "musicgen", "medium", r#"{"prompt":"x"}"#, "1"),
            generated_file_id("alice", "musicgen", "small", r#"{"prompt":"y"}"#, "1"),
            generated_file_id("alice", "musicgen", "small", r#"{"prompt":"x"}"#, "2"),
        ] {
            assert_ne!(g, other);
        }
        // Another domain than uploads: the same words as a "content hash" give another id.
        assert_ne!(g, file_id("alice", "musicgen"));
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: serde_json::Value =
            serde_json::json!({"b": 1, "a": {"d": 2, "c": [3, {"z": 1, "y": 2}]}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":[3,{"y":2,"z":1}],"d":2},"b":1}"#
        );
        let j1 = job_id("f1", "demucs", "htdemucs", &canonical_json(&a), "1");
        let j2 = job_id("f1", "demucs", "htdemucs", &canonical_json(&a), "2");
        assert_ne!(j1, j2);
    }

    #[test]
    fn a_job_identity_names_its_request() {
        let params: serde_json::Value = serde_json::json!({"shifts": 1, "overlap": 0.25});
        let reordered: serde_json::Value = serde_json::json!({"overlap": 0.25, "shifts": 1});
        let id = JobIdentity::new("f1", "demucs", "htdemucs", &params, "v4");
        assert_eq!(
            id,
            JobIdentity::new("f1", "demucs", "htdemucs", &reordered, "v4")
        );
        assert_eq!(
            id.job_id(),
            job_id("f1", "demucs", "htdemucs", &canonical_json(&params), "v4")
        );
        for other in [
            JobIdentity::new("f2", "demucs", "htdemucs", &params, "v4"),
            JobIdentity::new("f1", "whisper", "htdemucs", &params, "v4"),
            JobIdentity::new("f1", "demucs", "htdemucs_6s", &params, "v4"),
            JobIdentity::new("f1", "demucs", "htdemucs", &serde_json::json!({}), "v4"),
            JobIdentity::new("f1", "demucs", "htdemucs", &params, "v5"),
        ] {
            assert_ne!(other.job_id(), id.job_id());
        }
        let job_id = id.job_id().to_string();
        let meta = EventMeta::new("r1", "user:u1");
        let r = id.request(meta.clone(), "u1".into(), 2);
        assert_eq!(
            r,
            JobRequested {
                meta,
                job_id,
                file_id: "f1".into(),
                owner: "u1".into(),
                model: "demucs".into(),
                variation: "htdemucs".into(),
                model_version: "v4".into(),
                params_json: r#"{"overlap":0.25,"shifts":1}"#.into(),
                attempt: 2,
                not_before: None,
                input: None,
            }
        );
    }

    #[test]
    fn the_input_is_part_of_a_jobs_identity() {
        let params = serde_json::json!({});
        let on_upload = JobIdentity::new("f1", "whisper", "tiny", &params, "v1");
        let vocals = |job_id: &str, output: &str| JobInput {
            job_id: job_id.into(),
            model: "demucs".into(),
            variation: "htdemucs".into(),
            output: output.into(),
        };
        let on_vocals = on_upload.clone().reading(vocals("ja", "vocals"));
        // Reading nothing keeps the id every earlier job was given.
        assert_eq!(
            on_upload.job_id(),
            job_id("f1", "whisper", "tiny", "{}", "v1")
        );
        assert_ne!(on_vocals.job_id(), on_upload.job_id());
        assert!(is_valid_id('j', on_vocals.job_id()));
        // Asking twice is one job; another output or another upstream job is another job.
        assert_eq!(on_vocals, on_upload.clone().reading(vocals("ja", "vocals")));
        for other in [vocals("ja", "drums"), vocals("jb", "vocals")] {
            assert_ne!(
                on_upload.clone().reading(other).job_id(),
                on_vocals.job_id()
            );
        }
        let r = on_vocals
            .clone()
            .request(EventMeta::new("r", "pipeline"), "u1".into(), 1);
        assert_eq!(r.job_id, on_vocals.job_id());
        assert_eq!(r.input, Some(vocals("ja", "vocals")));
    }

    fn step(name: &str, model: &str, input: Option<(&str, &str)>) -> PipelineStep {
        PipelineStep {
            name: name.into(),
            job_id: String::new(),
            model: model.into(),
            variation: "tiny".into(),
            model_version: "v1".into(),
            params_json: r#"{"a":1}"#.into(),
            input: input.map(|(step, output)| crate::pipeline::PipelineStepInput {
                step: step.into(),
                output: output.into(),
            }),
        }
    }

    #[test]
    fn a_steps_identity_reads_its_upstream_job() {
        let mut steps = vec![
            step("separate", "demucs", None),
            step("transcribe", "whisper", Some(("separate", "vocals"))),
        ];
        let sep = step_identity("f1", &steps, &steps[0]).unwrap();
        assert_eq!(
            sep,
            JobIdentity::new("f1", "demucs", "tiny", &serde_json::json!({"a": 1}), "v1")
        );
        steps[0].job_id = sep.job_id().to_string();
        let tr = step_identity("f1", &steps, &steps[1]).unwrap();
        let expected =
            JobIdentity::new("f1", "whisper", "tiny", &serde_json::json!({"a": 1}), "v1").reading(
                JobInput {
                    job_id: sep.job_id().into(),
                    model: "demucs".into(),
                    variation: "tiny".into(),
                    output: "vocals".into(),
                },
            );
        assert_eq!(tr, expected);
        // A step naming a step that is not there, or with parameters that are not an object.
        let orphan = step("pitch", "pitch", Some(("nowhere", "vocals")));
        assert!(matches!(
            step_identity("f1", &steps, &orphan),
            Err(StepError::UnknownUpstream { .. })
        ));
        let mut bad = step("x", "pitch", None);
        bad.params_json = "[1]".into();
        assert!(matches!(
            step_identity("f1", &steps, &bad),
            Err(StepError::Params { .. })
        ));
    }

    #[test]
    fn a_pipeline_id_is_its_owner_file_and_job_ids_in_any_order() {
        let p = pipeline_id("u1", "f1", ["ja", "jb"]);
        assert!(is_valid_id('p', &p));
        assert_eq!(p, pipeline_id("u1", "f1", ["jb", "ja"]));
        assert_ne!(p, pipeline_id("u2", "f1", ["ja", "jb"]));
        assert_ne!(p, pipeline_id("u1", "f2", ["ja", "jb"]));
        assert_ne!(p, pipeline_id("u1", "f1", ["ja"]));
        assert_ne!(p, pipeline_id("u1", "f1", ["ja", "jc"]));
    }
}
