//! Signing secrets sealed at rest. A registration's `whsec_…` secret is what a receiver trusts
//! a delivery by, so a copy of the database (a backup, a read replica, a leaked dump) must not
//! hand it out. The API seals it as it registers it, AES-256-GCM under a key derived (HKDF-
//! SHA256) from `webhooks.secret_key`, with the webhook id as associated data (a ciphertext
//! moved to another row does not open); the dispatcher opens it for each attempt. The row keeps
//! the key's id (`webhooks.secret_key_id`) beside the ciphertext, so keys rotate: a new key
//! seals, the retired ones in `webhooks.previous_secret_keys` still open what they sealed, and
//! the dispatcher re-seals those rows under the current key ([`crate::store::reseal`]).
//! Secrets never travel on the topics: registrations are rows, written before the job's request
//! is emitted, and events carry only the webhook-free job.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use roar_common::config::{ConfigError, WebhooksConfig};

/// The first byte of a sealed secret: the format (AES-256-GCM, 12-byte nonce, HKDF key).
const FORMAT: u8 = 1;
/// HKDF salt and info: a key derived here is of no use for anything else.
const SALT: &[u8] = b"roar webhook signing secrets";
const INFO: &[u8] = b"aes-256-gcm v1";

/// Why a secret could not be sealed or opened. None is retryable as it stands: the operator
/// fixes the configuration (the delivery waits for its next attempt meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// `webhooks.secret_key` is not set: nothing can be sealed (or opened).
    #[error("webhooks.secret_key (ROAR_WEBHOOKS__SECRET_KEY) is not set: webhook signing secrets are kept sealed and need it")]
    NoKey,
    /// The row names a key this process does not hold (rotated away too early, or another
    /// deployment's database).
    #[error("the signing secret was sealed with key id {0:?}, which is neither webhooks.secret_key_id nor in webhooks.previous_secret_keys")]
    UnknownKey(String),
    /// The key with that id is not the one that sealed it, or the bytes were altered.
    #[error("the signing secret does not open with the key of id {0:?}: a different key under the same id, or altered bytes")]
    Unreadable(String),
    /// The system's random source failed.
    #[error("no randomness for a nonce")]
    Random,
}

/// A sealed secret as stored: the key id and `FORMAT ‖ nonce ‖ ciphertext ‖ tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// The sealing keys by id, the current one first. Never printed.
pub struct SealKeys {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "SealKeys {{ ids: {ids:?} }}")
    }
}

fn derive(key: &str) -> LessSafeKey {
    let prk = Salt::new(HKDF_SHA256, SALT).extract(key.as_bytes());
    // AES-256-GCM's key length is far below HKDF-SHA256's output limit, the only failure.
    let okm = prk
        .expand(&[INFO], &AES_256_GCM)
        .expect("32 bytes are within HKDF's output limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

impl SealKeys {
    /// The keys `cfg` configures (checked by its `validate`); none when `secret_key` is empty.
    pub fn from_config(cfg: &WebhooksConfig) -> Result<SealKeys, ConfigError> {
        let keys = cfg
            .secret_keys()?
            .into_iter()
            .map(|(id, key)| (id, derive(&key)))
            .collect();
        Ok(SealKeys {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The id of the key that seals, if one is configured.
    pub fn current_id(&self) -> Option<&str> {
        self.keys.first().map(|(id, _)| id.as_str())
    }

    /// Seals `secret` for the registration `webhook_id` under the current key.
    pub fn seal(&self, webhook_id: &str, secret: &str) -> Result<Sealed, SealError> {
        let (id, key) = self.keys.first().ok_or(SealError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut buf = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(webhook_id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| SealError::Unreadable(id.clone()))?;
        let mut bytes = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        bytes.push(FORMAT);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&buf);
        Ok(Sealed {
            key_id: id.clone(),
            bytes,
        })
    }

    /// Opens the secret of `webhook_id` sealed under `key_id`.
    pub fn open(&self, webhook_id: &str, key_id: &str, bytes: &[u8]) -> Result<String, SealError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_string()))?;
        let unreadable = || SealError::Unreadable(key_id.to_string());
        let rest = match bytes.split_first() {
            Some((&FORMAT, rest)) if rest.len() > NONCE_LEN => rest,
            _ => return Err(unreadable()),
        };
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(webhook_id.as_bytes()), &mut buf)
            .map_err(|_| unreadable())?;
        String::from_utf8(plain.to_vec()).map_err(|_| unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roar_common::config::Secret;

    const K1: &str = "3b9e1f7c0a2d4e6f8a1c3e5b7d9f0a2c";
    const K2: &str = "c2a0f9d7b5e3c1a8f6e4d2a0c7f1e9b3";
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn keys(current: &str, id: &str, previous: &str) -> SealKeys {
        let cfg = WebhooksConfig {
            secret_key: Secret::new(current),
            secret_key_id: id.into(),
            previous_secret_keys: Secret::new(previous),
            ..WebhooksConfig::default()
        };
        SealKeys::from_config(&cfg).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_row() {
        let k = keys(K1, "1", "");
        let s = k.seal("wh_a", SECRET).unwrap();
        assert_eq!(s.key_id, "1");
        let hay = String::from_utf8_lossy(&s.bytes);
        assert!(!hay.contains("MfKQ9r8G"), "the secret is readable: {hay}");
        assert_ne!(
            k.seal("wh_a", SECRET).unwrap().bytes,
            s.bytes,
            "nonce reused"
        );
        assert_eq!(k.open("wh_a", "1", &s.bytes).unwrap(), SECRET);
        // Another row's ciphertext, altered bytes, a wrong key under the same id.
        assert_eq!(
            k.open("wh_b", "1", &s.bytes),
            Err(SealError::Unreadable("1".into()))
        );
        let mut altered = s.bytes.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(k.open("wh_a", "1", &altered).is_err());
        assert!(k.open("wh_a", "1", &s.bytes[..10]).is_err());
        let wrong = keys(K2, "1", "");
        let e = wrong.open("wh_a", "1", &s.bytes).unwrap_err();
        assert_eq!(e, SealError::Unreadable("1".into()));
        assert!(e.to_string().contains("does not open"), "{e}");
    }

    #[test]
    fn rotated_keys_open_what_they_sealed_and_unknown_ids_say_so() {
        let old = keys(K1, "1", "").seal("wh_a", SECRET).unwrap();
        let rotated = keys(K2, "2", &format!("1:{K1}"));
        assert_eq!(rotated.current_id(), Some("2"));
        assert_eq!(rotated.open("wh_a", "1", &old.bytes).unwrap(), SECRET);
        let new = rotated.seal("wh_a", SECRET).unwrap();
        assert_eq!(new.key_id, "2");
        // The old key dropped too early: the error names the id and both knobs.
        let e = keys(K2, "2", "").open("wh_a", "1", &old.bytes).unwrap_err();
        assert_eq!(e, SealError::UnknownKey("1".into()));
        let m = e.to_string();
        assert!(
            m.contains("\"1\"") && m.contains("previous_secret_keys") && !m.contains(K1),
            "{m}"
        );
        let none = keys("", "1", "");
        assert_eq!(none.current_id(), None);
        assert_eq!(none.seal("wh_a", SECRET), Err(SealError::NoKey));
        assert!(!format!("{rotated:?}").contains(K1));
    }

    #[test]
    fn bad_sealing_settings_are_refused_without_naming_the_key() {
        for (cur, id, prev, why) in [
            ("short", "1", String::new(), "at least 32"),
            (K2, "2", format!("2:{K1}"), "used twice"),
            (K2, "2", "1:short".to_string(), "at least 32"),
            (K2, "2", "no-colon".to_string(), "<id>:<key>"),
            (K2, "a b", String::new(), "secret_key_id"),
            ("", "1", format!("0:{K1}"), "secret_key is not"),
        ] {
            let cfg = WebhooksConfig {
                secret_key: Secret::new(cur),
                secret_key_id: id.into(),
                previous_secret_keys: Secret::new(prev.clone()),
                ..WebhooksConfig::default()
            };
            let e = SealKeys::from_config(&cfg).unwrap_err().to_string();
            assert!(e.contains(why), "{cur} {id} {prev}: {e}");
            assert!(!e.contains(K1) && !e.contains(K2), "a key in an error: {e}");
        }
        // One key per purpose.
        let mut c = roar_common::Config::default();
        c.webhooks.secret_key = Secret::new(K1);
        assert!(c.validate().is_ok());
        c.auth.link_secret = Secret::new(K1);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("one key per purpose"), "{e}");
    }
}
