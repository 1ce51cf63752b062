//! Jobs laid out in the store as their workers leave them, for tests of what reads them.

use roar_common::catalog::Resolved;
use roar_common::storage::job_output_dir;
use roar_processors::runtime::Manifest;
use roar_schemas::ids::JobIdentity;
use roar_schemas::Output;
use serde_json::json;
use sha2::Digest;

use super::Infra;

/// Writes what a demucs worker leaves when job `job_id` of `r` on `file_id` completes: the stem
/// `vocals.wav` holding `vocals`, then the manifest naming it (size and sha256). Returns the
/// stem's output, as the job's `JobCompleted` lists it.
pub fn write_separation(
    infra: &Infra,
    file_id: &str,
    job_id: &str,
    r: &Resolved,
    vocals: &[u8],
) -> Output {
    let dir = job_output_dir(file_id, r.model, &r.variation, job_id);
    let output = Output {
        path: format!("{dir}vocals.wav"),
        kind: "stem".into(),
        content_type: "audio/wav".into(),
        size: vocals.len() as i64,
        sha256: hex::encode(sha2::Sha256::digest(vocals)),
    };
    let root = infra.store_dir();
    std::fs::create_dir_all(root.join(&dir)).unwrap();
    std::fs::write(root.join(&output.path), vocals).unwrap();
    let manifest = Manifest {
        job_id: job_id.into(),
        file_id: file_id.into(),
        model: r.model.into(),
        variation: r.variation.clone(),
        model_version: r.model_version.clone(),
        params: r.params.clone(),
        created_at: chrono::Utc::now(),
        duration_seconds: 1.0,
        outputs: vec![output.clone()],
    };
    std::fs::write(
        root.join(format!("{dir}manifest.json")),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    output
}

/// A finished demucs (`htdemucs`, version `test-1`) job on `file_id` whose `vocals.wav` is
/// `vocals`, as its worker leaves it in the store; returns the job's id. Only the hand-off to
/// a job reading that stem is then under test.
pub fn finished_separation(infra: &Infra, file_id: &str, vocals: &[u8]) -> String {
    let r = Resolved {
        model: "demucs",
        variation: "htdemucs".into(),
        model_version: "test-1".into(),
        params: json!({}),
    };
    let up = JobIdentity::new(file_id, r.model, &r.variation, &r.params, &r.model_version);
    let job_id = up.job_id().to_string();
    write_separation(infra, file_id, &job_id, &r, vocals);
    job_id
}
