//! Where a job's audio comes from: the upload, or one output of another job (a pipeline step),
//! found through that job's manifest and checked against the size and sha256 it records. An
//! input that is gone or altered is a permanent failure with a clear code, never a hang.

use roar_common::kafka::HandleError;
use roar_common::storage::{
    job_output_dir, prompt_key, upload_key, Storage, StorageError, PROMPT_OBJECT, PROMPT_SEALED,
};
use roar_schemas::{JobInput, JobRequested, Output};
use sha2::{Digest, Sha256};

use super::manifest;
use crate::audio::{Limits, Source};

/// Why a job's input could not be opened: a code for `JobFailed` and whether a retry may help.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unavailable {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
}

impl Unavailable {
    fn permanent(code: &'static str, message: String) -> Self {
        Self {
            code,
            message,
            retryable: false,
        }
    }
}

fn storage_failure(e: StorageError, what: &str) -> Unavailable {
    match e {
        StorageError::NotFound(_) => {
            Unavailable::permanent("missing_input", format!("{what} is missing from storage"))
        }
        e if e.is_retryable() => Unavailable {
            code: "storage_unavailable",
            message: e.to_string(),
            retryable: true,
        },
        e => Unavailable::permanent("storage_error", e.to_string()),
    }
}

/// Puts the request's prompt back into `params` from the object the API wrote it to
/// (`prompt_object`: a musicgen prompt never travels on a topic readable), dropping the sealed
/// copy meant for the projector. The object must be this job's own; once the song is deleted
/// it is gone and the job fails `prompt_erased` (a replay or redelivery of a deleted song's
/// request runs nothing).
pub(crate) async fn prompt(
    storage: &Storage,
    req: &JobRequested,
    params: &mut serde_json::Value,
) -> Result<(), Unavailable> {
    let Some(obj) = params.as_object_mut() else {
        return Ok(());
    };
    obj.remove(PROMPT_SEALED);
    let Some(named) = obj.remove(PROMPT_OBJECT) else {
        return Ok(());
    };
    let own = prompt_key(&req.file_id, &req.job_id);
    if named.as_str() != Some(own.as_str()) {
        return Err(Unavailable::permanent(
            "invalid_params",
            format!("{PROMPT_OBJECT} must be {own}, this job's own"),
        ));
    }
    let bytes = match storage.get(&own).await {
        Ok(b) => b,
        Err(StorageError::NotFound(_)) => {
            return Err(Unavailable::permanent(
                "prompt_erased",
                "the prompt is gone: its song was deleted".into(),
            ))
        }
        Err(e) => return Err(storage_failure(e, "the prompt")),
    };
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        Unavailable::permanent("invalid_params", "the prompt object is not UTF-8".into())
    })?;
    obj.insert("prompt".into(), text.into());
    Ok(())
}

/// The output `name` (its file name without the extension) among `outputs`.
pub(crate) fn find<'a>(outputs: &'a [Output], name: &str) -> Option<&'a Output> {
    outputs.iter().find(|o| {
        let file = o.path.rsplit('/').next().unwrap_or("");
        file.split_once('.').map_or(file, |(stem, _)| stem) == name
    })
}

/// Opens the audio `req` asks for. An upstream output is read whole to check its sha256 before
/// any of it is decoded (it is bounded by `limits.max_input_bytes`); the upload is streamed.
pub(crate) async fn open(
    storage: &Storage,
    req: &JobRequested,
    limits: &Limits,
) -> Result<Result<Source, Unavailable>, HandleError> {
    let Some(input) = &req.input else {
        return Ok(match storage.reader(&upload_key(&req.file_id)).await {
            Ok(r) => Ok(Source::object(r)),
            Err(e) => Err(storage_failure(e, "the uploaded file")),
        });
    };
    let output = match upstream_output(storage, &req.file_id, input).await? {
        Ok(o) => o,
        Err(u) => return Ok(Err(u)),
    };
    if output.size < 0 || output.size as u64 > limits.max_input_bytes {
        return Ok(Err(Unavailable::permanent(
            "too_large",
            format!(
                "input {} is {} bytes, over the {} byte limit",
                output.path, output.size, limits.max_input_bytes
            ),
        )));
    }
    let bytes = match storage.get(&output.path).await {
        Ok(b) => b,
        Err(e) => return Ok(Err(storage_failure(e, &format!("input {}", output.path)))),
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as i64 != output.size || sha256 != output.sha256 {
        return Ok(Err(Unavailable::permanent(
            "input_changed",
            format!(
                "input {} no longer matches its manifest (size {}, sha256 {sha256}; expected {}, {})",
                output.path,
                bytes.len(),
                output.size,
                output.sha256
            ),
        )));
    }
    Ok(Ok(Source::bytes(bytes.to_vec())))
}

/// The upstream job's output named by `input`, from its manifest.
async fn upstream_output(
    storage: &Storage,
    file_id: &str,
    input: &JobInput,
) -> Result<Result<Output, Unavailable>, HandleError> {
    let valid = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && !s.starts_with('.');
    if !roar_schemas::ids::is_valid_id('j', &input.job_id)
        || !valid(&input.model)
        || !valid(&input.variation)
    {
        return Ok(Err(Unavailable::permanent(
            "invalid_input",
            format!("not a job output reference: {input:?}"),
        )));
    }
    let dir = job_output_dir(file_id, &input.model, &input.variation, &input.job_id);
    let Some(m) = manifest::finished(storage, &dir, &input.job_id).await? else {
        return Ok(Err(Unavailable::permanent(
            "missing_input",
            format!(
                "job {} has no finished outputs (no manifest in {dir})",
                input.job_id
            ),
        )));
    };
    Ok(match find(&m.outputs, &input.output) {
        Some(o) if o.path.starts_with(&dir) => Ok(o.clone()),
        _ => {
            let names: Vec<_> = m
                .outputs
                .iter()
                .filter_map(|o| o.path.rsplit('/').next())
                .collect();
            Err(Unavailable::permanent(
                "missing_input",
                format!(
                    "job {} has no output {:?} (it has {})",
                    input.job_id,
                    input.output,
                    names.join(", ")
                ),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(path: &str) -> Output {
        Output {
            path: path.into(),
            kind: "stem".into(),
            content_type: "audio/wav".into(),
            size: 1,
            sha256: String::new(),
        }
    }

    #[test]
    fn an_output_is_named_by_its_file_name_without_the_extension() {
        let outs = [
            out("outputs/f/demucs/h/j/vocals.wav"),
            out("outputs/f/demucs/h/j/no_vocals.flac"),
            out("outputs/f/pitch/t/j/f0"),
        ];
        assert_eq!(find(&outs, "vocals").unwrap().path, outs[0].path);
        assert_eq!(find(&outs, "no_vocals").unwrap().path, outs[1].path);
        assert_eq!(find(&outs, "f0").unwrap().path, outs[2].path);
        assert!(find(&outs, "drums").is_none());
        assert!(find(&outs, "vocals.wav").is_none());
        assert!(find(&outs, "").is_none());
    }
}
