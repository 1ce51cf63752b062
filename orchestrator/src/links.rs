//! Links the orchestrator signs itself for the local object store (S3 gets presigned URLs
//! instead): a base64url JSON claim set plus an HMAC-SHA256 over it, with an expiry. The claims
//! name the exact object and, for uploads, the declared size and hash, so a link cannot be
//! bent to another object or content. The signature names its key (`sig=<key id>.<hmac>`), so
//! link keys rotate: retired keys (`auth.link_previous_keys`) verify until they are removed.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use roar_common::config::LinkKeys;
use roar_projections::apply::JobRow;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::views::{stored_outputs, OutputView};
use crate::{ApiError, AppState};

/// What a signed link allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// `GET` or `PUT`.
    pub m: String,
    /// The object key.
    pub k: String,
    /// Expiry, unix seconds.
    pub e: i64,
    /// For uploads: the file, its size and sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<UploadClaims>,
}

/// What an upload link binds. The claims are signed, not encrypted (anyone holding the link
/// reads them), so they name no person: the owner, file name and type stay in the
/// registration (`upload_registrations`), which the PUT reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadClaims {
    pub file_id: String,
    pub size: u64,
    pub sha256: String,
}

fn mac(secret: &str, data: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    m.update(data);
    m
}

/// `t=<claims>&sig=<key id>.<hmac>` for a query string, signed with key `id`.
pub fn sign(id: &str, secret: &str, claims: &LinkClaims) -> String {
    let t = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let sig = hex::encode(mac(secret, t.as_bytes()).finalize().into_bytes());
    format!("t={t}&sig={id}.{sig}")
}

/// The keys of this configuration (start-up checked them; a state built otherwise gets none).
fn keys(s: &AppState) -> LinkKeys {
    s.cfg.link_keys().unwrap_or_else(|e| {
        tracing::error!(error = %e, "link keys unusable: no link signs or verifies");
        LinkKeys::from_config(&Default::default()).expect("no keys is valid")
    })
}

/// Signs `claims` with the current link key.
pub fn sign_current(s: &AppState, claims: &LinkClaims) -> Result<String, ApiError> {
    let keys = keys(s);
    let (id, key) = keys
        .current()
        .ok_or_else(|| ApiError::internal("no link key configured"))?;
    Ok(sign(id, key, claims))
}

/// Checks a link against this configuration's keys (see `verify`).
pub fn verify_current(
    s: &AppState,
    t: &str,
    sig: &str,
    method: &str,
) -> Result<LinkClaims, ApiError> {
    verify(&keys(s), t, sig, method)
}

/// Checks a link's signature (with the key it names), method and expiry.
pub fn verify(keys: &LinkKeys, t: &str, sig: &str, method: &str) -> Result<LinkClaims, ApiError> {
    let denied = || ApiError::Forbidden("invalid or expired link".into());
    let (id, sig) = sig.split_once('.').ok_or_else(denied)?;
    let secret = keys.get(id).ok_or_else(denied)?;
    // Start-up refuses a short key; this keeps a misbuilt state (tests, benches) from
    // accepting links anyone can sign.
    if secret.len() < roar_common::config::MIN_LINK_SECRET_LEN {
        return Err(denied());
    }
    let sig = hex::decode(sig).map_err(|_| denied())?;
    mac(secret, t.as_bytes())
        .verify_slice(&sig)
        .map_err(|_| denied())?;
    let raw = URL_SAFE_NO_PAD.decode(t).map_err(|_| denied())?;
    let claims: LinkClaims = serde_json::from_slice(&raw).map_err(|_| denied())?;
    if claims.m != method || claims.e < chrono::Utc::now().timestamp() {
        return Err(denied());
    }
    Ok(claims)
}

/// A URL a client can GET `key` from until the link expires: presigned on S3, signed by the
/// orchestrator otherwise, and also on S3 while `http.download_bytes_per_second_per_user` is
/// set: a presigned URL's bytes never pass the orchestrator, so they could not be limited.
pub async fn download_url(s: &AppState, key: &str) -> Result<String, ApiError> {
    let ttl = s.cfg.http.link_ttl_seconds;
    if s.cfg.http.download_bytes_per_second_per_user == 0 {
        if let Some(url) = s
            .storage
            .presign("GET", key, Duration::from_secs(ttl))
            .await
            .map_err(ApiError::internal)?
        {
            return Ok(url.to_string());
        }
    }
    let claims = LinkClaims {
        m: "GET".into(),
        k: key.to_string(),
        e: chrono::Utc::now().timestamp() + ttl as i64,
        up: None,
    };
    let name = key.rsplit('/').next().unwrap_or("download");
    Ok(format!(
        "{}/files/{name}?{}",
        s.cfg.http.public_url.trim_end_matches('/'),
        sign_current(s, &claims)?
    ))
}

/// The storage key of an output: workers report full keys under `outputs/`; a bare name is
/// taken relative to the job's output folder.
pub fn output_key(job: &JobRow, path: &str) -> String {
    if path.starts_with("outputs/") {
        path.to_string()
    } else {
        format!(
            "{}{}",
            roar_common::storage::job_output_dir(
                &job.file_id,
                &job.model,
                &job.variation,
                &job.job_id
            ),
            path.trim_start_matches('/')
        )
    }
}

/// The job's outputs, each with a `url` to download it (none where no link could be made).
pub async fn outputs_with_urls(s: &AppState, job: &JobRow) -> Vec<OutputView> {
    let mut out = stored_outputs(job);
    for o in &mut out {
        match download_url(s, &output_key(job, &o.path)).await {
            Ok(url) => o.url = Some(url),
            Err(e) => tracing::warn!(job_id = %job.job_id, error = %e, "no download url"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(e: i64) -> LinkClaims {
        LinkClaims {
            m: "GET".into(),
            k: "outputs/f/x.json".into(),
            e,
            up: None,
        }
    }

    fn parts(q: &str) -> (String, String) {
        let mut t = String::new();
        let mut sig = String::new();
        for kv in q.split('&') {
            if let Some(v) = kv.strip_prefix("t=") {
                t = v.into();
            } else if let Some(v) = kv.strip_prefix("sig=") {
                sig = v.into();
            }
        }
        (t, sig)
    }

    const K1: &str = "link-key-one-0a9b8c7d6e5f4a3b2c1d0e";
    const K2: &str = "link-key-two-1f2e3d4c5b6a79880a1b2c";

    fn keys(current: (&str, &str), previous: &str) -> LinkKeys {
        let mut a = roar_common::Config::default().auth;
        a.link_key_id = current.0.into();
        a.link_secret = roar_common::config::Secret::new(current.1);
        a.link_previous_keys = roar_common::config::Secret::new(previous);
        LinkKeys::from_config(&a).unwrap()
    }

    #[test]
    fn links_verify_only_unchanged_unexpired_and_for_their_method() {
        let k1 = keys(("1", K1), "");
        let k2 = keys(("1", K2), "");
        let future = chrono::Utc::now().timestamp() + 60;
        let (t, sig) = parts(&sign("1", K1, &claims(future)));
        assert!(sig.starts_with("1."), "{sig}");
        assert_eq!(verify(&k1, &t, &sig, "GET").unwrap(), claims(future));
        assert!(verify(&k2, &t, &sig, "GET").is_err());
        assert!(verify(&k1, &t, &sig, "PUT").is_err());
        let mut tampered = claims(future);
        tampered.k = "outputs/g/x.json".into();
        let (t2, _) = parts(&sign("1", K1, &tampered));
        assert!(verify(&k1, &t2, &sig, "GET").is_err());
        let (t, sig) = parts(&sign("1", K1, &claims(future - 120)));
        assert!(verify(&k1, &t, &sig, "GET").is_err());
        assert!(verify(&k1, "!!", "zz", "GET").is_err());
    }

    #[test]
    fn a_retired_key_verifies_its_links_until_it_is_removed() {
        let future = chrono::Utc::now().timestamp() + 60;
        let (t, old_sig) = parts(&sign("a", K1, &claims(future)));
        let rotated = keys(("b", K2), &format!("a:{K1}"));
        assert_eq!(
            verify(&rotated, &t, &old_sig, "GET").unwrap(),
            claims(future)
        );
        let (t_new, new_sig) = parts(&sign("b", K2, &claims(future)));
        assert!(verify(&rotated, &t_new, &new_sig, "GET").is_ok());
        let retired = keys(("b", K2), "");
        assert!(verify(&retired, &t, &old_sig, "GET").is_err());
        // A signature cannot pick another key than the one that made it, nor none.
        let relabelled = old_sig.replacen("a.", "b.", 1);
        assert!(verify(&rotated, &t, &relabelled, "GET").is_err());
        let bare = old_sig.trim_start_matches("a.").to_string();
        assert!(verify(&rotated, &t, &bare, "GET").is_err());
    }

    /// A state built without a real key (the old fallback left it empty) must not accept the
    /// links anyone can sign with that key.
    #[test]
    fn links_signed_with_an_empty_or_short_key_never_verify() {
        let future = chrono::Utc::now().timestamp() + 60;
        let none = LinkKeys::from_config(&roar_common::Config::default().auth).unwrap();
        for weak in ["", "short-key"] {
            let (t, sig) = parts(&sign("1", weak, &claims(future)));
            assert!(verify(&none, &t, &sig, "GET").is_err(), "{weak:?}");
        }
    }
}
