//! Deterministic ids. A file id comes from its owner and content hash, so a duplicate upload
//! maps to the existing file and replays are idempotent; a job id comes from everything that
//! determines a job's outputs, so asking twice names the same job.

use sha2::{Digest, Sha256};

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

/// `j` + 32 hex characters, from the file, model, variation, canonical params and model version.
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
}
