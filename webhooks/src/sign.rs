//! Signatures in the Standard Webhooks form: the receiver checks
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`
//! with the registration's secret (`whsec_<base64 key>`), rejects stale timestamps, and
//! drops repeated `webhook-id`s (the event's id: the same on every attempt).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Key bytes accepted in a caller's own secret.
const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;

/// Why a secret was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("secret must be `whsec_` followed by the base64 of 24 to 64 random bytes (or leave it out and keep the one returned)")]
pub struct BadSecret;

/// The key bytes of a `whsec_…` secret.
pub fn key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
    let key = STANDARD.decode(b64).map_err(|_| BadSecret)?;
    if KEY_LEN.contains(&key.len()) {
        Ok(key)
    } else {
        Err(BadSecret)
    }
}

/// A new random secret (32 bytes from the OS's generator, through two v4 UUIDs).
pub fn new_secret() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` value of one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}
